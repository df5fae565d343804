"""Flux support: jobspecs, job results and the bindings, imported only when Flux is used.

Nothing here imports ``flux`` at module level: ``import ensemble`` works on machines without
Flux, and :func:`~ensemble.flux.bindings.import_flux` says which piece is missing.
"""

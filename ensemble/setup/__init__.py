"""The setup directory: creating and opening it (:mod:`~ensemble.setup.setupdir`), taking runs in
(:mod:`~ensemble.setup.intake`), commands to a running manager (:mod:`~ensemble.setup.control`),
the record of allocations and provenance, and :class:`~ensemble.setup.handle.EnsembleHandle`, the
open setup directory the layers below the :class:`~ensemble.Ensemble` facade are given."""

"""Launchers: how one step is started (a command line and environment; never state)."""
from __future__ import annotations

from ensemble.lazy import lazy_exports

#: Each exported name and the submodule defining it, imported on first use (see :mod:`ensemble.lazy`).
WHERE = {
    "FluxLauncher": "flux",
    "JsrunLauncher": "lsf",
    "Launcher": "base",
    "LocalLauncher": "local",
    "LrunLauncher": "lsf",
    "MpirunLauncher": "mpirun",
    "SrunLauncher": "srun",
}

__getattr__, __dir__ = lazy_exports(__name__, WHERE)
__all__ = list(WHERE)

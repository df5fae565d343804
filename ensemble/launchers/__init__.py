"""Launchers: how one step is started (a command line and environment; never state)."""
from __future__ import annotations

from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from ensemble.launchers.base import Launcher
    from ensemble.launchers.flux import FluxLauncher
    from ensemble.launchers.local import LocalLauncher
    from ensemble.launchers.lsf import JsrunLauncher, LrunLauncher
    from ensemble.launchers.mpirun import MpirunLauncher
    from ensemble.launchers.srun import SrunLauncher

__getattr__, __dir__ = lazy_exports(__name__, WHERE)
__all__ = ["FluxLauncher", "JsrunLauncher", "Launcher", "LocalLauncher", "LrunLauncher", "MpirunLauncher", "SrunLauncher"]

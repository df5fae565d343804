"""Launchers: how one step is started (a command line and environment; never state)."""
from __future__ import annotations

from ensemble.launchers.base import Launcher
from ensemble.launchers.flux import FluxLauncher
from ensemble.launchers.local import LocalLauncher
from ensemble.launchers.lsf import JsrunLauncher, LrunLauncher
from ensemble.launchers.mpirun import MpirunLauncher
from ensemble.launchers.srun import SrunLauncher

__all__ = ["FluxLauncher", "JsrunLauncher", "Launcher", "LocalLauncher", "LrunLauncher", "MpirunLauncher", "SrunLauncher"]

"""Executors: how a step is started and watched (a local fork, srun, a node-local worker, Flux).

The engine's loop sees an executor only through :class:`Executor`; it never
knows which one it drives.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ensemble.lazy import lazy_exports

#: Each exported name and the submodule defining it, imported on first use (see :mod:`ensemble.lazy`).
WHERE = {
    "Executor": "base",
    "Handle": "base",
    "Launch": "base",
    "LocalExecutor": "local",
    "SpawnerExecutor": "spawner",
    "SrunExecutor": "srun",
    "WorkerExecutor": "worker",
}

if TYPE_CHECKING:
    from ensemble.executors.base import Executor, Handle, Launch
    from ensemble.executors.local import LocalExecutor
    from ensemble.executors.spawner import SpawnerExecutor
    from ensemble.executors.srun import SrunExecutor
    from ensemble.executors.worker import WorkerExecutor

__getattr__, __dir__ = lazy_exports(__name__, WHERE)
__all__ = ["Executor", "Handle", "Launch", "LocalExecutor", "SpawnerExecutor", "SrunExecutor", "WorkerExecutor"]

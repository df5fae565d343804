"""Executors: how a step is started and watched (a local fork, srun, a node-local worker, Flux).

The engine's loop sees an executor only through :class:`Executor`; it never
knows which one it drives.
"""
from __future__ import annotations

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

__getattr__, __dir__ = lazy_exports(__name__, WHERE)
__all__ = list(WHERE)

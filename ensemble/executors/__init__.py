"""Executors: how a step is started and watched (a local fork, srun, a node-local worker, Flux).

The engine's loop sees an executor only through :class:`Executor`; it never
knows which one it drives.
"""
from ensemble.executors.base import Executor, Handle, Launch
from ensemble.executors.local import LocalExecutor
from ensemble.executors.spawner import SpawnerExecutor
from ensemble.executors.srun import SrunExecutor
from ensemble.executors.worker import WorkerExecutor

__all__ = ["Executor", "Handle", "Launch", "LocalExecutor", "SpawnerExecutor", "SrunExecutor", "WorkerExecutor"]

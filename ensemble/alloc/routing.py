"""Which steps go through node-local workers and which through srun, decided once per step.

:func:`on_worker` is the one rule: a step of one task (so on one node) goes to its node's
worker; a wider step (several tasks or nodes: an MPI job) goes through ``srun``.  The launcher
(:class:`RoutedLauncher`: no prefix for a worker step) and the executor (:class:`RoutedExecutor`)
both ask it, so a step's command line and the way it is started always agree.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ensemble.executors.base import Ending, Executor, Handle, Launch
from ensemble.launchers.base import Launcher
from ensemble.providers.resources import Placement
from ensemble.spec import Step


def on_worker(step: Step, placement: Placement) -> bool:
    """Whether the step runs through its node's worker: one task on one node, no GPUs (a GPU step
    goes through srun, so Slurm binds its devices; the worker's own step holds none)."""
    return step.tasks == 1 and not step.gpus_per_task and len(placement.shares) == 1


class RoutedLauncher(Launcher):
    """The wide launcher's command for wide steps, the bare application for worker steps."""

    name = "worker"

    def __init__(self, wide: Launcher) -> None:
        self.wide = wide

    def prefix(self, step: Step, placement: Placement) -> list[str]:
        return [] if on_worker(step, placement) else self.wide.prefix(step, placement)

    def env(self, step: Step, placement: Placement) -> dict[str, str]:
        return self.wide.env(step, placement)


class RoutedExecutor(Executor):
    """Worker steps to ``workers``, the rest to ``wide``; every later call goes to the handle's owner."""

    name = "worker"

    def __init__(self, wide: Executor, workers: Executor) -> None:
        self.wide, self.workers = wide, workers
        self.owner: dict[Handle, Executor] = {}

    def set_base_env(self, env: Mapping[str, str]) -> None:
        super().set_base_env(env)
        self.wide.set_base_env(env)
        self.workers.set_base_env(env)

    def start(self, launch: Launch) -> Handle:
        executor = self.workers if on_worker(launch.step, launch.placement) else self.wide
        handle = executor.start(launch)
        self.owner[handle] = executor
        return handle

    def fileno(self, handle: Handle) -> int | None:
        return self.owner[handle].fileno(handle)

    def exited(self, handle: Handle) -> bool:
        return self.owner[handle].exited(handle)

    def signal(self, handle: Handle, sig: int) -> bool:
        return self.owner[handle].signal(handle, sig)

    def reap(self, handle: Handle) -> int:
        return self.owner[handle].reap(handle)

    def sweep(self, handle: Handle) -> int:
        """The last call about an attempt at shutdown (reaped, then swept): its owner is forgotten."""
        return self.owner.pop(handle).sweep(handle)

    def collect(self, handle: Handle) -> Ending:
        """The last call about an ended attempt: its owner collects it and is forgotten."""
        return self.owner.pop(handle).collect(handle)

    def flush(self) -> None:
        self.wide.flush()
        self.workers.flush()

    def channels(self) -> list[int]:
        return [*self.wide.channels(), *self.workers.channels()]

    def on_readable(self, fd: int) -> list[Handle]:
        return (self.workers if fd in self.workers.channels() else self.wide).on_readable(fd)

    def take_lost_nodes(self) -> set[str]:
        return self.wide.take_lost_nodes() | self.workers.take_lost_nodes()

    def describe(self) -> dict[str, Any]:
        return {**self.wide.describe(), **self.workers.describe(), "executor": self.name,
                "wide_executor": self.wide.name}

    def settle(self) -> None:
        self.wide.settle()
        self.workers.settle()

    def close(self) -> None:
        self.workers.close()
        self.wide.close()

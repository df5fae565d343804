"""An engine whose workers are plain local processes, one per fake node (no Slurm needed).

Run as ``python tests/worker_helpers.py SETUP_DIR``: the engine runs in that process (it becomes
a subreaper, so it must not be the test process); its exit status is the engine's.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ensemble.alloc.routing import RoutedExecutor, RoutedLauncher
from ensemble.engine import Engine, EngineOptions
from ensemble.executors import LocalExecutor, WorkerExecutor
from ensemble.launchers import LocalLauncher
from ensemble.providers import Provider
from ensemble.providers.resources import Node

WORKER = [sys.executable, "-m", "ensemble.executors.nodeworker"]
NODES = (Node("a", (0, 1)), Node("b", (0, 1)))


class FakeNodes(Provider):
    """Two nodes of two cores, both this host."""

    name = "fake-nodes"

    def nodes(self) -> tuple[Node, ...]:
        return NODES


def local_engine(setup_dir: Path) -> Engine:
    def executor() -> RoutedExecutor:
        return RoutedExecutor(LocalExecutor(), WorkerExecutor(NODES, lambda node: WORKER))

    return Engine(setup_dir, FakeNodes(), RoutedLauncher(LocalLauncher()), EngineOptions(timeout=1.0),
                  executor=executor)


if __name__ == "__main__":
    sys.exit(local_engine(Path(sys.argv[1])).run())

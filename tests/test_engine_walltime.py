"""Fixes from review: a dropped reserved run frees the queue; restarts and later steps obey the
walltime rule; a lost node leaves runs for the next allocation instead of failing them."""
from __future__ import annotations

import sys

from engine_helpers import create, run, sh, statuses
from test_engine_parts import never, state

from ensemble.alloc.routing import RoutedExecutor, RoutedLauncher
from ensemble.engine import EXIT_WORK_LEFT, Engine, EngineOptions
from ensemble.engine.runqueue import RunQueue
from ensemble.executors import LocalExecutor, WorkerExecutor
from ensemble.launchers import LocalLauncher
from ensemble.providers import Provider
from ensemble.providers.resources import Node, Pool
from ensemble.status import RunStatus


def test_a_reserved_run_that_is_dropped_no_longer_holds_the_queue():
    pool = Pool((Node("n", (0, 1)),))
    queue = RunQueue(pool)
    busy = pool.allocate(1, 1, 0)
    wide = state(steps=1, shape=(2, 1))
    small = [state(steps=1, run_id=i) for i in range(2, 8)]
    queue.waiting.extend([wide, *small])
    placed = []
    for _ in range(queue.reserve_after + 1):  # the small runs pass the reserved wide one, then wait
        for r, placement in queue.pick(None, never):
            placed.append(r.id)
            pool.release(placement)
    assert queue.reserved is wide and queue.pick(None, never) == []
    picked = queue.pick(None, lambda r: r is wide)  # e.g. its timeout no longer fits
    assert picked and queue.reserved is None
    pool.release(busy)


def test_a_later_step_whose_timeout_cannot_fit_is_not_started(edir):
    # Step 0 takes a second; step 1 may take 30 s but only ~5 s are left: left for later.
    ens = create([run(1, sh("sleep 1"), sh("sleep 60", timeout=0.5))])
    ens.execute_local(blocking=True, cores=2, timeout=0.1, launcher="local")
    assert [(a["step"], a["outcome"]) for a in ens.attempts()] == [(0, "success")]
    row = ens.runs([1])[0]
    assert row["status"] is RunStatus.QUEUED and row["step"] == 1 and row["restarts"] == 0


NODES = (Node("a", (0, 1)), Node("b", (0, 1)))


class TwoNodes(Provider):
    name = "two-nodes"

    def nodes(self) -> tuple[Node, ...]:
        return NODES


def test_a_run_that_fitted_before_a_node_was_lost_waits_for_the_next_allocation(edir):
    ens = create([run(i, sh("true")) for i in range(1, 4)] + [run(4, sh("true", tasks=3))])

    def worker(node: Node) -> list[str]:  # node b's worker dies at once
        return [sys.executable, "-m", "ensemble.executors.nodeworker"] if node.name == "a" else ["sh", "-c", "exit 1"]

    def executor() -> RoutedExecutor:
        return RoutedExecutor(LocalExecutor(), WorkerExecutor(NODES, worker))

    code = Engine(ens.setup_dir, TwoNodes(), RoutedLauncher(LocalLauncher()), EngineOptions(timeout=0.5),
                  executor=executor).run()
    assert code == EXIT_WORK_LEFT
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS, 3: RunStatus.SUCCESS,
                             4: RunStatus.QUEUED}, [r["message"] for r in ens.runs()]

"""Several managers on one ensemble (``allow_multiple=True``): a dead peer's runs are reclaimed
before a manager declares the queue drained, and a late manager does a real share of the work."""
from __future__ import annotations

import os
import signal
from collections import Counter

from engine_helpers import (
    attempts_by_run,
    create,
    open_attempts,
    proc_state,
    run,
    sh,
    start_detached,
    statuses,
    wait_file,
    wait_for,
)
from fault_helpers import lines, wait_gone

from ensemble.status import RunStatus


def test_survivor_reclaims_the_runs_of_a_dead_peer_before_draining(fdir):  # defect 9
    gate, side = fdir / "gate", fdir / "side.log"
    runs = 20
    ens = create([run(i, sh(f'{wait_file(gate)}; echo "$ENSEMBLE_RUN_ID" >> {side}')) for i in range(1, runs + 1)])
    a = start_detached(ens, cores=1, allow_multiple=True)
    wait_for(lambda: {x["run_id"] for x in open_attempts(ens)} == {1}, "A to run run 1")
    a_id = open_attempts(ens)[0]["manager"]
    b = start_detached(ens, cores=2, allow_multiple=True)
    wait_for(lambda: {x["run_id"] for x in open_attempts(ens) if x["manager"] != a_id} == {2, 3},
             "B to run runs 2 and 3")
    step = next(x["pid"] for x in open_attempts(ens) if x["run_id"] == 1)
    os.kill(a, signal.SIGKILL)
    os.killpg(step, signal.SIGKILL)
    wait_for(lambda: proc_state(a) is None, "A to be dead and reaped")
    wait_gone(step, "A's step to be dead")
    gate.touch()
    wait_gone(b, "B to finish", deadline=60)

    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, runs + 1)}, \
        "B finishes everything, including the run it reclaimed from its dead peer"
    assert all(r["claimed_by"] is None for r in ens.runs())
    assert Counter(int(x) for x in lines(side)) == {i: 1 for i in range(1, runs + 1)}
    assert [x["outcome"] for x in attempts_by_run(ens)[1]] == ["interrupted", "success"]
    assert not ens.store.leases()


def test_a_second_manager_does_a_substantial_share(fdir):  # defect 9
    runs = 200
    ens = create([run(i, sh("sleep 0.05")) for i in range(1, runs + 1)])
    a = start_detached(ens, cores=2, allow_multiple=True)
    b = start_detached(ens, cores=2, allow_multiple=True)
    wait_gone(a, "A to finish", deadline=60)
    wait_gone(b, "B to finish", deadline=60)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, runs + 1)}
    per_manager = Counter(x["manager"] for x in ens.attempts())
    assert len(per_manager) == 2
    # Equal managers started together each do about half; 20 % is a generous bound, and needs no
    # clock: B starts while A has, at most, a few of its 200 runs done.
    assert all(count > runs * 0.2 for count in per_manager.values()), per_manager
    assert sum(per_manager.values()) == runs


def test_max_concurrency_with_several_managers_does_not_stall(fdir):
    # Claimed-ahead runs have not started: they must not count against max_concurrency.
    ens = create([run(i, sh("true")) for i in range(1, 6)])
    ens.execute_local(blocking=True, cores=2, max_concurrency=1, allow_multiple=True, timeout=0.5)
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    assert not [e for e in ens.events() if e["kind"] == "stopping"], "it drained, not stopped by its time limit"

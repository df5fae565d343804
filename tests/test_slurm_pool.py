"""Against the real Slurm testbed (4 nodes x 8 CPUs): automatic allocations keep several jobs
on one setup directory, cancel pending ones once nothing waits, replace an allocation that was
killed, and leave nothing in ``squeue``; job arrays run every run once, restarts included."""
from __future__ import annotations

import sqlite3
from collections import Counter

import pytest
from engine_helpers import attempts_by_run, create, events, run, sh, statuses, wait_for
from slurm_helpers import DEADLINE

from ensemble.alloc.autoalloc import TEND_EVERY_ENV
from ensemble.providers import pool
from ensemble.status import RunStatus
from ensemble.store import DB_NAME


@pytest.fixture(autouse=True)
def quick_tending(monkeypatch):
    """A look at the pool every second (30 s by default)."""
    monkeypatch.setenv(TEND_EVERY_ENV, "1")


def pool_jobs(ens) -> list[str]:
    return pool.read(ens.setup_dir / "batch" / "pool-1.json").jobs


def wait_pool_done(slurm, ens) -> list[str]:
    """Wait until every run ended and no job of the pool is queued or running; the pool's jobs."""
    wait_for(lambda: not ens.count_by_status(RunStatus.QUEUED) and not set(pool_jobs(ens)) & set(slurm.squeue()),
             "the pool to finish", 4 * DEADLINE)
    return pool_jobs(ens)


def each_run_succeeded_once(ens) -> None:
    outcomes = {run_id: Counter(a["outcome"] for a in tries) for run_id, tries in attempts_by_run(ens).items()}
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    assert len(outcomes) == len(statuses(ens))
    assert all(o["success"] == 1 and set(o) <= {"success", "interrupted"} for o in outcomes.values()), outcomes
    conn = sqlite3.connect(ens.setup_dir / DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM attempts WHERE end IS NULL").fetchone()[0] == 0
    conn.close()


def test_three_allocations_share_the_ensemble_and_none_is_left(edir, slurm):
    ens = create([run(i, sh("sleep 0.3")) for i in range(1, 121)])
    first = ens.execute_alloc(nodes=1, timeout=5, max_allocations=3)
    jobs = wait_pool_done(slurm, ens)
    assert jobs[0] == first and len(jobs) == 3  # backlog 120 over 8 runs per allocation: 3 at once
    each_run_succeeded_once(ens)
    managers = Counter(a["manager"] for a in ens.attempts())
    assert len(managers) == 3 and min(managers.values()) >= 8, managers
    started = {e["detail"]["job_id"] for e in events(ens, "manager_started")}
    assert started == set(jobs)
    assert [e["detail"]["job_id"] for e in events(ens, "alloc_pool_submitted")] == jobs
    assert not set(jobs) & set(slurm.squeue())


def test_pending_allocations_are_cancelled_once_nothing_waits(edir, slurm):
    # Three nodes per allocation on four: one runs, the others wait, and the first does all.
    ens = create([run(i, sh("sleep 0.2")) for i in range(1, 101)])
    ens.execute_alloc(nodes=3, timeout=5, max_allocations=3)
    jobs = wait_pool_done(slurm, ens)
    each_run_succeeded_once(ens)
    ran = {e["detail"]["job_id"] for e in events(ens, "manager_started")}
    cancelled = [e["detail"]["job_id"] for e in events(ens, "alloc_pool_cancelled")]
    assert len(jobs) == 3 and ran == {jobs[0]}, (jobs, ran)
    assert sorted(cancelled) == sorted(jobs[1:])
    assert {slurm.job_state(j) for j in cancelled} == {"CANCELLED"}
    assert not set(jobs) & set(slurm.squeue())


def test_killed_allocation_loses_nothing_and_runs_nothing_twice(edir, slurm):
    ens = create([run(i, sh("sleep 1")) for i in range(1, 81)])
    ens.execute_alloc(nodes=1, timeout=5, max_allocations=2, kill_grace=1)
    wait_for(lambda: len({a["manager"] for a in ens.attempts() if a["end"] is None}) == 2,
             "both allocations to run steps", DEADLINE)
    victim = pool_jobs(ens)[0]
    slurm.run("scancel", victim)
    jobs = wait_pool_done(slurm, ens)
    each_run_succeeded_once(ens)
    assert slurm.job_state(victim) == "CANCELLED"
    assert any(a["outcome"] == "interrupted" for a in ens.attempts())
    assert not set(jobs) & set(slurm.squeue())


def test_array_of_fifty_tasks_runs_five_hundred_runs_once(edir, slurm):
    # Run 7 fails its first attempt and is restarted inside its task; every run reports a result.
    flaky = 'test -e tried || { touch tried; exit 1; }; '
    ens = create([run(i, sh(f"{flaky if i == 7 else ''}echo '{{\"i\": {i}}}' > ensemble_result.json"))
                  for i in range(1, 501)], max_restarts=1)
    job = ens.execute_array(runs_per_task=10, max_running=4, timeout=5)
    wait_for(lambda: job not in {j.split("_")[0] for j in slurm.run("squeue", "-h", "-r", "-o", "%i").stdout.split()},
             "the array to finish", 4 * DEADLINE)
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    tries = attempts_by_run(ens)
    assert [a["outcome"] for a in tries[7]] == ["failure", "success"]
    assert all([a["outcome"] for a in t] == ["success"] for run_id, t in tries.items() if run_id != 7)
    assert ens.as_dataframe()["i"].tolist() == list(range(1, 501))
    started = events(ens, "manager_started")
    assert len(started) == 50 and len({e["detail"]["manager"] for e in started}) == 50
    by_manager = Counter(a["manager"] for a in ens.attempts() if a["outcome"] == "success")
    assert set(by_manager.values()) == {10}
    assert [e["detail"]["tasks"] for e in events(ens, "alloc_array_submitted")] == [50]

"""Against the real Slurm testbed: the allocation's end (Slurm's SIGTERM, the walltime rule, early_stop)."""
from __future__ import annotations

import time

from engine_helpers import create, events, pids_with, run, sh, statuses, token, wait_for
from slurm_helpers import batch_script

from ensemble.engine import EXIT_WORK_LEFT
from ensemble.status import RunStatus


def test_sigterm_from_slurm_interrupts_and_requeues_without_counting(edir, slurm):
    tok = token()
    ens = create([run(i, sh(f"sleep 290.{tok}", tasks=2)) for i in range(1, 5)], max_restarts=0)
    script = batch_script(edir / "job.sh", ens.setup_dir)
    job = slurm.submit(script, edir / "job.out", "-N", "1", "--exclusive", "-t", "5")
    wait_for(lambda: sum(a["end"] is None for a in ens.attempts()) == 4 and len(pids_with(tok)) >= 8,
             "four 2-task steps to run")
    slurm.run("scancel", "--signal=TERM", "--full", job)
    slurm.wait_gone([job])
    attempts = ens.attempts()
    assert [a["outcome"] for a in attempts] == ["interrupted"] * 4
    assert set(statuses(ens).values()) == {RunStatus.QUEUED}
    assert all(r["restarts"] == 0 and r["claimed_by"] is None for r in ens.runs())
    wait_for(lambda: not pids_with(tok), "no step process left on any node")


def test_step_whose_timeout_cannot_fit_waits_for_the_next_allocation(edir, slurm):
    ens = create([run(1, sh("true")), run(2, sh("true", timeout=0.1)), run(3, sh("true", timeout=2)),
                  run(4, sh("true"))])
    script = batch_script(edir / "job.sh", ens.setup_dir)
    job = slurm.submit(script, edir / "job.out", "-N", "1", "--exclusive", "-t", "1")
    slurm.wait_gone([job])
    assert slurm.exit_code(job) == EXIT_WORK_LEFT, (edir / "job.out").read_text()
    status = statuses(ens)
    assert status == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS, 3: RunStatus.QUEUED, 4: RunStatus.SUCCESS}
    assert [a["run_id"] for a in ens.attempts()].count(3) == 0, "never started only to be killed"
    # Outside the allocation (no end), the same run runs.
    ens.execute_local(blocking=True, launcher="local", timeout=3)
    assert statuses(ens)[3] is RunStatus.SUCCESS


def test_early_stop_starts_nothing_in_the_last_minutes(edir, slurm):
    ens = create([run(i, sh("true")) for i in range(1, 4)])
    script = batch_script(edir / "job.sh", ens.setup_dir, "--early-stop", "0.9")
    started = time.time()
    job = slurm.submit(script, edir / "job.out", "-N", "1", "--exclusive", "-t", "1")
    slurm.wait_gone([job])
    assert slurm.exit_code(job) == EXIT_WORK_LEFT, (edir / "job.out").read_text()
    assert set(statuses(ens).values()) == {RunStatus.QUEUED}
    assert ens.attempts() == []
    stops = [e for e in events(ens, "stopping") if e["time"] >= started]
    assert len(stops) == 1 and "early_stop" in stops[0]["detail"]["reason"]

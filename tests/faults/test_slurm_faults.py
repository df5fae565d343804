"""Against the real Slurm testbed: a step's ``srun`` killed, and the whole job cancelled.

After each: every run is queued or in one terminal state, no attempt is left open, no step
process is left on any node, the database passes ``PRAGMA integrity_check``, and a resume
finishes the rest.  (A killed node-local worker: tests/test_slurm_worker.py.)
"""
from __future__ import annotations

import os
import signal
import sqlite3

from engine_helpers import create, pids_with, run, sh, statuses, token, wait_for
from slurm_helpers import batch_script

from ensemble.status import RunStatus
from ensemble.store import DB_NAME


def srun_of_run(run_id: int) -> int | None:
    """The pid of the ``srun`` the manager started for run ``run_id``."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"srun") and f"ENSEMBLE_RUN_ID={run_id}".encode() in env:
            return int(entry.name)
    return None


def integrity_ok(ens) -> bool:
    conn = sqlite3.connect(ens.setup_dir / DB_NAME)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def test_a_killed_srun_fails_its_attempt_which_restarts(edir, slurm):
    tok = token()
    first = f'if [ "$ENSEMBLE_ATTEMPT" -eq 1 ]; then exec sleep 290.{tok}; fi; echo ok'
    ens = create([run(1, sh(first, tasks=2)), run(2, sh("echo ok"))], max_restarts=1)
    script = batch_script(edir / "job.sh", ens.setup_dir, "--launcher", "srun")
    job = slurm.submit(script, edir / "job.out", "-N", "1", "--exclusive", "-t", "5")
    srun = wait_for(lambda: srun_of_run(1) if len(pids_with(tok)) >= 2 else None, "run 1's two tasks to run")
    os.kill(srun, signal.SIGKILL)
    slurm.wait_gone([job])
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS}, (edir / "job.out").read_text()
    first_attempt = ens.attempts(1)[0]
    assert (first_attempt["outcome"], first_attempt["signal"]) == ("failure", signal.SIGKILL)
    assert [a["outcome"] for a in ens.attempts(1)] == ["failure", "success"]
    wait_for(lambda: not pids_with(tok), "the killed srun's tasks to be gone from every node")
    assert integrity_ok(ens)


def test_a_cancelled_job_loses_nothing_and_a_resume_finishes(edir, slurm):
    tok, gate = token(), edir / "gate"
    long = f'if [ -e "{gate}" ]; then echo ok; else exec sleep 290.{tok}; fi'
    ens = create([run(i, sh(long if i <= 4 else "echo ok")) for i in range(1, 13)], max_restarts=0)
    script = batch_script(edir / "job.sh", ens.setup_dir)
    job = slurm.submit(script, edir / "job.out", "-N", "1", "--exclusive", "-t", "5")
    wait_for(lambda: len(pids_with(tok)) >= 4, "four long steps to run")
    slurm.run("scancel", job)
    slurm.wait_gone([job])
    wait_for(lambda: not pids_with(tok), "no step process left on any node")
    attempts = ens.attempts()
    assert all(a["end"] is not None for a in attempts), "no attempt left open"
    assert {a["outcome"] for a in attempts if a["run_id"] <= 4} == {"interrupted"}
    assert set(statuses(ens).values()) <= {RunStatus.QUEUED, RunStatus.SUCCESS}
    assert all(r["claimed_by"] is None for r in ens.runs())
    assert integrity_ok(ens)
    gate.touch()
    ens.execute_local(blocking=True, launcher="local", timeout=3)
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}

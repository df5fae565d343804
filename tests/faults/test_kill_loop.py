"""kill -9 of the manager at 22 random moments of a 500-run ensemble, then resume.

The runs have one or two steps, some fail once (a restart), a ``post_run`` hook makes each
result.  Every manager is killed with SIGKILL at a random moment; the next one adopts the
steps still running and takes the exits its predecessors' keepers recorded.  After the last
resume: every run succeeded once with its result, no step that had finished ran again, each
restart was counted once, no attempt record is open or lost, nothing of the ensemble is left
running, and the database passes ``PRAGMA integrity_check``.  The figures go to
``docs/reliability.rst``.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

from engine_helpers import events, execute, proc_state, start_detached, statuses, wait_for

from ensemble import CompositeRun, Ensemble, Step
from ensemble.status import RunStatus
from ensemble.store import DB_NAME

RUNS, KILLS, CORES = 500, 22, 8
INTERFACE = '''
import os

def post_run(run_id, sample, run_dir):
    with open(os.path.join(run_dir, "post_run_calls"), "a") as f:
        f.write("call\\n")
    return {"y": sample["x"] * 2}
'''


def step_command(x: int, step: int) -> str:
    """Log start and end; runs with x % 9 == 0 fail attempt 1 of step 0."""
    pause = 0.1 + (x % 5) * 0.05
    fail = (f'if [ {x % 9} -eq 0 ] && [ {step} -eq 0 ] && [ "$ENSEMBLE_ATTEMPT" -eq 1 ]; then '
            f'echo "fail {step} $ENSEMBLE_ATTEMPT" >> tries; exit 3; fi; ')
    return (f'echo "start {step} $ENSEMBLE_ATTEMPT" >> tries; sleep {pause}; {fail}'
            f'echo "end {step} $ENSEMBLE_ATTEMPT" >> tries')


def make_run(x: int) -> CompositeRun:
    steps = 2 if x % 4 == 0 else 1
    return CompositeRun({"x": x}, [Step(["sh", "-c", step_command(x, k)], batch_script=False) for k in range(steps)])


def ensemble_processes(setup_dir: Path) -> list[int]:
    needle = f"ENSEMBLE_SETUP_DIR={setup_dir}".encode() + b"\0"
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as env:
                    if needle in env.read() + b"\0" and proc_state(int(entry.name)) not in (None, "Z"):
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_22_kills_of_the_manager_lose_nothing_and_repeat_no_finished_step(edir):
    (edir / "iface.py").write_text(INTERFACE)
    ens = Ensemble.create(runs=[make_run(x) for x in range(RUNS)], setup_dir="setup", app_interface="iface.py",
                          max_restarts=2)
    rng, kills, began = random.Random(22), 0, time.monotonic()
    while kills < KILLS:
        pid = start_detached(ens, cores=CORES, timeout=3)
        time.sleep(rng.uniform(0.0, 0.8))
        if proc_state(pid) is None:
            break
        os.kill(pid, signal.SIGKILL)
        kills += 1
        wait_for(lambda dead=pid: proc_state(dead) is None, "the killed manager to be reaped by its keeper")
    execute(ens, cores=CORES, timeout=3)
    elapsed = time.monotonic() - began
    assert kills == KILLS, f"the ensemble finished after {kills} kills: not enough work to kill into"

    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, RUNS + 1)}
    rows = {r["id"]: r for r in ens.runs()}
    assert {i: r["result"] for i, r in rows.items()} == {
        i: {"y": r["sample"]["x"] * 2} for i, r in rows.items()}
    attempts = ens.attempts()
    assert all(a["end"] is not None and a["outcome"] for a in attempts), "no attempt record is left open"
    outcomes = Counter(a["outcome"] for a in attempts)
    assert set(outcomes) <= {"success", "failure", "interrupted"}, outcomes
    repeated = []
    for run_id, row in rows.items():
        x, steps = row["sample"]["x"], (2 if row["sample"]["x"] % 4 == 0 else 1)
        lines = Path(row["run_dir"], "tries").read_text().split("\n")[:-1]
        mine = [a for a in attempts if a["run_id"] == run_id]
        for step in range(steps):
            ends = [n for n, line in enumerate(lines) if line.startswith(f"end {step} ")]
            assert len(ends) == 1, f"run {run_id} step {step} finished {len(ends)} times: {lines}"
            if any(line.startswith(f"start {step} ") for line in lines[ends[0] + 1:]):
                repeated.append((run_id, step))
            assert [a["outcome"] for a in mine if a["step"] == step].count("success") == 1
        # A run with x % 9 == 0 fails its attempt 1 (unless that attempt was interrupted before
        # its process started): each failure is one restart, interruptions are none.
        failures = sum(line.startswith("fail ") for line in lines)
        assert failures <= int(x % 9 == 0)
        assert row["restarts"] == failures, f"run {run_id}: {row['restarts']} restarts, {failures} failures"
        assert [a["outcome"] for a in mine].count("failure") == failures
        assert Path(row["run_dir"], "post_run_calls").is_file()
    assert not repeated, f"finished steps ran again after a crash: {repeated}"
    wait_for(lambda: not ensemble_processes(ens.setup_dir), "every process of the ensemble to end")
    conn = sqlite3.connect(ens.setup_dir / DB_NAME)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    starts = [e["detail"] for e in events(ens, "manager_started")]
    adopted_running = sum(d["adopted_running"] for d in starts)
    adopted_ended = sum(d["adopted_ended"] for d in starts)
    post_twice = sum(len(Path(r["run_dir"], "post_run_calls").read_text().split()) > 1 for r in rows.values())
    print(f"\n{kills} kills, {len(starts)} managers, {elapsed:.1f} s; attempts {dict(outcomes)}; adopted "
          f"{adopted_running} running + {adopted_ended} ended; finished steps run again: {len(repeated)}; "
          f"post_run called twice: {post_twice}")

"""Crash safety: a manager killed with SIGKILL at different points, SIGTERM, and the execution
time limit.  After any of them, the next execution kills what was left, records interrupted
attempts (which cost no restart), runs each unfinished run once more and nothing else."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import (
    attempts_by_run,
    create,
    events,
    execute,
    is_gone,
    long_sleep,
    open_attempts,
    pids_with,
    proc_state,
    run,
    run_row,
    sh,
    start_detached,
    statuses,
    token,
    wait_for,
    wait_manager_exit,
)

from ensemble.alloc.execution import options_spec
from ensemble.status import RunStatus

RUNS = 5


def gated(go: Path, tok: str, fast: bool) -> str:
    """Record the attempt; sleep briefly if ``fast``, else wait until ``go`` exists (the command
    line carries ``tok``)."""
    body = "sleep 0.2" if fast else f'while [ ! -e "{go}" ]; do sleep 0.1{tok}; done; sleep 0.2'
    return f'echo "$ENSEMBLE_ATTEMPT" >> tries; {body}'


def open_ids(ens) -> set[int]:
    return {a["run_id"] for a in open_attempts(ens)}


def succeeded(ens) -> set[int]:
    return {i for i, s in statuses(ens).items() if s is RunStatus.SUCCESS}


@pytest.mark.parametrize("keeper", [True, False], ids=["keeper", "no-keeper"])
@pytest.mark.parametrize("point, fast_runs, running", [
    # "right after start": no run has finished, both steps the manager could start are running.
    pytest.param("right after start", 0, {1, 2}, id="after-start"),
    pytest.param("mid-run, two runs done", 2, {3, 4}, id="mid-run"),
    pytest.param("near the end, one run left", 4, {5}, id="near-end"),
])
def test_kill_9_then_resume(edir, monkeypatch, point, fast_runs, running, keeper):
    """With its keeper, a killed manager's running steps go on and the next manager adopts them
    (each runs once); without one (``ENSEMBLE_KEEPER=0``) they are killed and run again."""
    if not keeper:
        monkeypatch.setenv("ENSEMBLE_KEEPER", "0")
    tok, go = token(), edir / "GO"
    ens = create([run(i, sh(gated(go, tok, fast=i <= fast_runs))) for i in range(1, RUNS + 1)], max_restarts=0)
    pid = start_detached(ens, cores=2)
    # An attempt is recorded before its process starts; its pid follows within moments.
    wait_for(lambda: succeeded(ens) == set(range(1, fast_runs + 1)) and open_ids(ens) == running
             and all(a["pid"] for a in open_attempts(ens)), f"the manager to reach the point '{point}'")
    os.kill(pid, signal.SIGKILL)
    # The process that started the manager (or its keeper) reaps it: no zombie is left looking alive.
    wait_for(lambda: proc_state(pid) is None, "the killed manager to be reaped")
    done_before = succeeded(ens)
    assert done_before == set(range(1, fast_runs + 1))
    leftovers = [a["pid"] for a in open_attempts(ens)]
    assert len(leftovers) == len(running) > 0
    assert all(proc_state(p) not in (None, "Z") for p in leftovers), "steps outlive a SIGKILLed manager"
    assert ens.store.leases(), "a SIGKILLed manager cannot release its lease"

    if keeper:
        go.touch()
        execute(ens, cores=2)
    else:
        # The leftovers wait until the next manager has killed them: released earlier, they could
        # end unseen before its survey (nothing records their end without a keeper).
        resumed = start_detached(ens, cores=2)
        wait_for(lambda: all(is_gone(p) for p in leftovers), "the next manager to kill the leftovers")
        go.touch()
        wait_manager_exit(ens, resumed)

    assert not pids_with(tok), "no step of the dead manager is left"
    assert all(is_gone(p) for p in leftovers)
    started = events(ens, "manager_started")[-1]["detail"]
    adopted = started["adopted_running"] + started["adopted_ended"]
    if keeper:
        assert adopted == len(leftovers) and started["recovered_attempts"] == 0
    else:
        assert adopted == 0 and started["killed_leftovers"] >= len(leftovers)
        assert started["recovered_attempts"] == len(leftovers)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, RUNS + 1)}
    by_run = attempts_by_run(ens)
    for run_id in range(1, RUNS + 1):
        outcomes = [a["outcome"] for a in by_run[run_id]]
        row = run_row(ens, run_id)
        assert row["restarts"] == 0, "interrupted attempts must not count as restarts"
        assert outcomes.count("success") == 1
        if run_id in done_before:
            assert outcomes == ["success"], f"run {run_id} had succeeded and must not run again"
            assert Path(row["run_dir"], "tries").read_text().split() == ["1"]
    for run_id in running:
        tries = Path(run_row(ens, run_id)["run_dir"], "tries").read_text().split()
        if keeper:
            assert [a["outcome"] for a in by_run[run_id]] == ["success"], "adopted, not run again"
            assert tries == ["1"]
        else:
            assert [a["outcome"] for a in by_run[run_id]] == ["interrupted", "success"]
            assert [a["attempt"] for a in by_run[run_id]] == [1, 2] and tries == ["1", "2"]
    for run_id in set(range(1, RUNS + 1)) - running - done_before:
        assert [a["outcome"] for a in by_run[run_id]] == ["success"], "never started before the kill"
    assert not ens.store.leases()


def test_sigterm_interrupts_and_resume_completes(edir):
    tok, go = token(), edir / "GO"
    ens = create([run(i, sh(gated(go, tok, fast=False))) for i in range(1, 4)], max_restarts=0)
    pid = start_detached(ens, cores=2)
    wait_for(lambda: open_ids(ens) == {1, 2}, "two runs to be running")
    os.kill(pid, signal.SIGTERM)
    wait_manager_exit(ens, pid)

    assert not pids_with(tok), "the manager kills its steps' process groups before it exits"
    assert not (ens.setup_dir / "manager.pid").exists()
    attempts = ens.attempts()
    assert [(a["run_id"], a["outcome"]) for a in attempts] == [(1, "interrupted"), (2, "interrupted")]
    assert all(a["signal"] == signal.SIGTERM for a in attempts)
    assert statuses(ens) == {i: RunStatus.QUEUED for i in (1, 2, 3)}
    assert all(r["claimed_by"] is None for r in ens.runs())
    assert events(ens, "manager_stopped")[-1]["detail"]["reason"] == "signal"

    go.touch()
    execute(ens, cores=2)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in (1, 2, 3)}
    by_run = attempts_by_run(ens)
    assert [a["outcome"] for a in by_run[1]] == ["interrupted", "success"]
    assert [a["outcome"] for a in by_run[2]] == ["interrupted", "success"]
    assert [a["outcome"] for a in by_run[3]] == ["success"]


def test_execution_time_limit_interrupts_and_resume_completes(edir):
    tok, go = token(), edir / "GO"
    ens = create([run(i, sh(gated(go, tok, fast=False))) for i in range(1, 4)], max_restarts=0)
    execute(ens, cores=2, timeout=0.02)

    assert not pids_with(tok)
    assert [a["outcome"] for a in ens.attempts()] == ["interrupted", "interrupted"]
    assert statuses(ens) == {i: RunStatus.QUEUED for i in (1, 2, 3)}
    assert not ens.store.leases()
    assert [e["detail"]["reason"] for e in events(ens, "stopping")] == ["timeout"]

    go.touch()
    execute(ens, cores=2)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in (1, 2, 3)}
    assert sum(a["outcome"] == "success" for a in ens.attempts()) == 3


def hanging_post_run(edir: Path) -> Path:
    """An interface whose post_run marks that it started, then waits for the returned gate."""
    gate = edir / "release"
    (edir / "iface.py").write_text(
        "import os, time\n"
        f"GATE = {str(gate)!r}\n"
        "def post_run():\n"
        "    open('post_run_started', 'w').close()\n"
        "    while not os.path.exists(GATE):\n"
        "        time.sleep(0.05)\n"
        "    return 'finished'\n")
    return gate


def assert_post_run_resumes(ens, gate: Path) -> None:
    """The interrupted run went back with its steps done; a later execution runs post_run once more."""
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.QUEUED and row["step"] == 1 and row["claimed_by"] is None
    gate.touch()
    execute(ens, cores=1)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.SUCCESS and row["result"] == "finished"
    assert [a["outcome"] for a in ens.attempts(1)] == ["success"]


def test_a_run_in_its_post_run_hook_has_its_steps_recorded_as_done(edir):
    # Between its last step and its completion a run waits for post_run: its step count is in
    # the database meanwhile, so a manager lost then would not run its steps again.
    gate = hanging_post_run(edir)
    ens = create([run(1, sh("true"), sh("true"))], app_interface="iface.py")
    pid = start_detached(ens, cores=1)
    wait_for(lambda: Path(run_row(ens, 1)["run_dir"], "post_run_started").exists(), "post_run to start")
    wait_for(lambda: run_row(ens, 1)["step"] == 2, "the run's two steps to be recorded while post_run runs")
    assert run_row(ens, 1)["status"] is RunStatus.QUEUED and run_row(ens, 1)["claimed_by"]
    gate.touch()
    wait_manager_exit(ens, pid)
    assert run_row(ens, 1)["status"] is RunStatus.SUCCESS and run_row(ens, 1)["result"] == "finished"
    assert [a["outcome"] for a in ens.attempts(1)] == ["success", "success"]


def test_sigterm_interrupts_a_hanging_hook_and_resume_finishes_it(edir):
    # An interrupt kills a post_run hook still in flight (the manager never waits for it), gives
    # the run back to the queue with its steps done, and a later execution runs post_run again.
    # SIGTERM is sent once the hook is known to be in flight (its marker file exists).
    gate = hanging_post_run(edir)
    ens = create([run(1, sh("true"))], app_interface="iface.py")
    pid = start_detached(ens, cores=1)
    wait_for(lambda: Path(run_row(ens, 1)["run_dir"], "post_run_started").exists(), "post_run to start")
    os.kill(pid, signal.SIGTERM)
    wait_manager_exit(ens, pid)
    assert [e["detail"]["reason"] for e in events(ens, "stopping")] == ["signal"]
    assert_post_run_resumes(ens, gate)


def test_time_limit_interrupts_a_hanging_hook_and_resume_finishes_it(edir):
    # The hook waits for a gate that opens only after the manager exited, so the time limit
    # necessarily expires while it is in flight; 3 s only bounds how long a `true` step and the
    # hook's start may take.
    gate = hanging_post_run(edir)
    ens = create([run(1, sh("true"))], app_interface="iface.py")
    execute(ens, cores=1, timeout=0.05)
    assert Path(run_row(ens, 1)["run_dir"], "post_run_started").exists()
    assert [e["detail"]["reason"] for e in events(ens, "stopping")] == ["timeout"]
    assert_post_run_resumes(ens, gate)


def test_ctrl_c_of_a_blocking_execution(edir):
    tok = token()
    # The step interrupts the manager (its parent, or its spawner's parent) as Ctrl-C would.
    manager = 'p=$PPID; case "$(cat /proc/$p/comm)" in spawner*) p=$(cut -d" " -f4 /proc/$p/stat);; esac'
    ens = create([run(1, sh(f"{manager}; kill -INT $p; exec {long_sleep(tok)}")), run(2, sh("true"))])
    with pytest.raises(KeyboardInterrupt):
        execute(ens, cores=1, max_concurrency=1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the caller's handler is restored"
    assert not pids_with(tok)
    assert [(a["run_id"], a["outcome"]) for a in ens.attempts()] == [(1, "interrupted")]
    assert statuses(ens) == {1: RunStatus.QUEUED, 2: RunStatus.QUEUED}
    assert not ens.store.leases()


def test_dead_but_unreaped_manager_does_not_block_the_next_execution(edir):
    tok = token()
    ens = create([run(1, sh(f"exec {long_sleep(tok)}"))])
    # A manager process that is our child, which we deliberately do not reap yet (without a keeper,
    # which would reap it).
    spec = options_spec(timeout=0.75, parallelism=None, allow_multiple=False, max_concurrency=None, cores=1, gpus=None)
    child = subprocess.Popen([sys.executable, "-m", "ensemble.alloc.execution", str(ens.setup_dir), json.dumps(spec)],
                             env={**os.environ, "ENSEMBLE_KEEPER": "0"})
    try:
        wait_for(lambda: open_ids(ens) == {1}, "the run to start")
        child.send_signal(signal.SIGKILL)
        wait_for(lambda: proc_state(child.pid) == "Z", "the manager to die")
        execute(ens, cores=1, timeout=0.01)
        assert not pids_with(tok)
        assert [a["outcome"] for a in ens.attempts()] == ["interrupted", "interrupted"]
    finally:
        child.wait()

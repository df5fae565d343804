"""Live control of a detached manager: status, dequeue, add, requeue, the single-manager lease,
several managers sharing the work, and the manager's CPU use while it waits."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from engine_helpers import (
    attempts_by_run,
    cpu_seconds,
    create,
    execute,
    is_gone,
    long_sleep,
    open_attempts,
    pids_with,
    proc_state,
    py,
    run,
    run_row,
    sh,
    start_detached,
    statuses,
    token,
    wait_file,
    wait_for,
    wait_manager_exit,
)

from ensemble import Ensemble, EnsembleBusy
from ensemble.cli import main as cli_main
from ensemble.status import RunStatus


def test_detached_manager_and_status_cli(edir, capsys):
    gate = edir / "release"
    ens = create([run("blocker", sh(wait_file(gate)))] + [run(i, sh("sleep 0.2")) for i in range(3)])
    pid = start_detached(ens, cores=2)
    # execute_local returned while the blocker cannot have finished: the manager runs detached
    assert (ens.setup_dir / "manager.pid").read_text().strip() == str(pid)
    assert proc_state(pid) not in (None, "Z")
    assert [lease["pid"] for lease in ens.store.leases()] == [pid]
    wait_for(lambda: ens.count_running() >= 1, "the blocker to be running")

    capsys.readouterr()
    assert cli_main(["--setup-dir", str(ens.setup_dir), "status", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["total"] == 4
    assert counts["running"] >= 1 and counts["queued"] >= 1
    assert cli_main(["--setup-dir", str(ens.setup_dir), "status", "1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["run_id", "status", "running"]
    assert table[1].split()[:3] == ["1", "queued", "True"]

    gate.touch()
    wait_manager_exit(ens, pid)
    assert not (ens.setup_dir / "manager.pid").exists()
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in (1, 2, 3, 4)}


def test_dequeue_queued_and_running_runs(edir):
    tok = token()
    slow, fast = sh(long_sleep(tok)), sh("sleep 0.2")
    ens = create([run(1, slow), run(2, slow), run(3, fast), run(4, fast), run(5, slow), run(6, slow)])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: {a["run_id"] for a in open_attempts(ens)} == {1, 2}, "runs 1 and 2 to be running")
    running_pids = [a["pid"] for a in open_attempts(ens)]

    ens.dequeue_runs([1, 2, 5, 6])
    wait_for(lambda: all(statuses(ens)[i] is RunStatus.KILLED for i in (1, 2, 5, 6)), "the runs to be killed")
    wait_for(lambda: not open_attempts(ens) or {a["run_id"] for a in open_attempts(ens)} <= {3, 4},
             "the killed attempts to end", deadline=15)
    wait_for(lambda: not pids_with(tok), "the dequeued runs' processes to be gone", deadline=15)
    assert all(proc_state(p) in (None, "Z") for p in running_pids)
    wait_manager_exit(ens, pid)

    status = statuses(ens)
    assert all(status[i] is RunStatus.KILLED for i in (1, 2, 5, 6)), "a killed run must never be overwritten"
    assert status[3] is RunStatus.SUCCESS and status[4] is RunStatus.SUCCESS
    by_run = attempts_by_run(ens)
    assert [a["outcome"] for a in by_run[1]] == ["killed"]
    assert [a["outcome"] for a in by_run[2]] == ["killed"]
    assert 5 not in by_run and 6 not in by_run
    assert all(r["claimed_by"] is None for r in ens.runs())


def test_add_and_requeue_while_running(edir):
    gate = edir / "release"
    fails_once = sh('if [ -e failed_once ]; then echo second; else touch failed_once; exit 2; fi')
    ens = create([run("blocker", sh(wait_file(gate))), run("flaky", fails_once)])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: run_row(ens, 2)["status"] is RunStatus.FAILURE, "run 2 to fail")

    ens.requeue_runs([2])
    ens.add_runs([run("added", sh("echo added > added.txt"))])
    wait_for(lambda: run_row(ens, 2)["status"] is RunStatus.SUCCESS, "the requeued run to succeed")
    wait_for(lambda: len(statuses(ens)) == 3 and run_row(ens, 3)["status"] is RunStatus.SUCCESS,
             "the added run to succeed")
    assert proc_state(pid) not in (None, "Z"), "the blocker keeps the same manager running"
    assert [a["outcome"] for a in attempts_by_run(ens)[2]] == ["failure", "success"]
    assert {a["manager"] for a in ens.attempts()} == {ens.store.leases()[0]["manager"]}
    assert Path(run_row(ens, 3)["run_dir"], "added.txt").read_text() == "added\n"

    gate.touch()
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS, 3: RunStatus.SUCCESS}


def test_second_execution_is_refused_while_one_runs(edir):
    gate = edir / "release"
    ens = create([run("blocker", sh(f"echo ran >> {edir}/ran; {wait_file(gate)}"))])
    pid = start_detached(ens, cores=1)
    other = Ensemble(ens.setup_dir)
    try:
        with pytest.raises(EnsembleBusy):
            ens.execute_local(blocking=True, cores=1)
        with pytest.raises(EnsembleBusy):
            other.execute_local(blocking=False, cores=1)
        with pytest.raises(EnsembleBusy):
            other.execute_local(blocking=True, cores=1, allow_multiple=True)
    finally:
        other.close()
    assert [lease["pid"] for lease in ens.store.leases()] == [pid]
    gate.touch()
    wait_manager_exit(ens, pid)
    assert (edir / "ran").read_text() == "ran\n"
    assert len(ens.attempts()) == 1
    execute(ens, cores=1)  # free again; nothing left to run
    assert len(ens.attempts()) == 1


def test_two_managers_share_the_work(edir):
    log = edir / "executed"
    ens = create([run(i, sh(f'echo "$ENSEMBLE_RUN_ID" >> {log}; sleep 0.6')) for i in range(8)])
    pid = start_detached(ens, cores=2, allow_multiple=True)
    execute(ens, cores=2, allow_multiple=True)
    wait_manager_exit(ens, pid)

    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, 9)}
    executed = sorted(int(line) for line in log.read_text().split())
    assert executed == list(range(1, 9)), "every run executed exactly once"
    by_run = attempts_by_run(ens)
    assert all([a["outcome"] for a in by_run[i]] == ["success"] for i in range(1, 9))
    assert len({a["manager"] for a in ens.attempts()}) == 2, "both managers ran some of the runs"


def test_dequeue_while_a_timed_out_step_dies_is_final(edir):
    # The step ignores SIGTERM, so after its timeout it lingers for the kill grace period;
    # a dequeue in that window must not let the timeout restart it.
    ignores_term = ("import pathlib, signal, time\n"
                    "signal.signal(signal.SIGTERM, lambda *a: pathlib.Path('got_term').touch())\n"
                    "while True:\n    time.sleep(0.05)\n")
    ens = create([run(1, py(ignores_term, timeout=0.01))], max_restarts=None)
    pid = start_detached(ens, cores=1)
    got_term = Path(run_row(ens, 1)["run_dir"], "got_term")
    wait_for(got_term.exists, "the timeout's SIGTERM")
    ens.dequeue_runs([1])
    wait_manager_exit(ens, pid, deadline=20)
    assert run_row(ens, 1)["status"] is RunStatus.KILLED
    assert [a["outcome"] for a in ens.attempts()] == ["killed"]


def test_idle_manager_uses_almost_no_cpu(edir):
    ens = create([run(i, sh("sleep 3")) for i in range(2)])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: len(open_attempts(ens)) == 2, "both runs to be running")
    before = cpu_seconds(pid)
    time.sleep(2.0)
    used = cpu_seconds(pid) - before
    assert used < 0.2, f"manager used {used:.2f} s of CPU while its runs slept"
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS}


def test_requeue_of_a_dying_dequeued_run_runs_it_again(edir):
    # Dequeued while running, requeued before its process is gone: the run stays this manager's
    # until the kill ends, then goes back to the queue and is executed again (not left queued).
    slow_to_die = ("import os, pathlib, signal, sys, time\n"
                   "if os.path.exists('second'):\n    sys.exit(0)\n"
                   "pathlib.Path('second').touch()\n"
                   "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(5), sys.exit(1)))\n"
                   "pathlib.Path('ready').touch()\n"
                   "while True:\n    time.sleep(0.05)\n")
    ens = create([run(1, py(slow_to_die))])
    pid = start_detached(ens, cores=1, kill_grace=10)  # dying takes 5 s: room for a loaded machine
    ready = Path(ens.runs([1])[0]["run_dir"]) / "ready"
    wait_for(ready.exists, "run 1 to be running with its SIGTERM handler")
    ens.dequeue_runs([1])
    wait_for(lambda: statuses(ens)[1] is RunStatus.KILLED, "run 1 to be killed")
    ens.requeue_runs([1])
    assert run_row(ens, 1)["claimed_by"] is not None, "the dying run stays claimed by its manager"
    wait_manager_exit(ens, pid, deadline=20)
    assert run_row(ens, 1)["status"] is RunStatus.SUCCESS
    assert [a["outcome"] for a in ens.attempts(1)] == ["killed", "success"]


def test_a_run_too_large_for_one_manager_is_left_for_a_larger_one(edir):
    # The small manager meets run 1 (4 cores) with a core free: it must leave it queued, not fail it.
    gate = edir / "gate"
    ens = create([run(1, sh("true", cores_per_task=4)), run(2, sh(wait_file(gate)))])
    small = start_detached(ens, cores=1, allow_multiple=True)
    wait_for(lambda: open_attempts(ens), "the small manager to start run 2")
    assert statuses(ens)[1] is RunStatus.QUEUED
    large = start_detached(ens, cores=4, allow_multiple=True)
    wait_for(lambda: statuses(ens)[1] is not RunStatus.QUEUED, "run 1 to finish")
    gate.touch()
    wait_manager_exit(ens, small)
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS}
    assert [a["manager"].split(":")[1] for a in ens.attempts(1)] == [str(large)]


def test_a_run_advanced_by_another_manager_resumes_at_its_step(edir):
    # Manager A read run 2 (at step 0) while busy; B ran its step 0 and was stopped during step 1.
    # When A claims run 2 it must continue at step 1, not repeat step 0 or reuse attempt numbers.
    gate_a, gate_step1 = edir / "gate_a", edir / "gate_step1"
    log = edir / "step0.log"
    ens = create([run(1, sh(wait_file(gate_a))),
                  run(2, sh(f"echo step0 >> {log}"), sh(wait_file(gate_step1)))])
    a = start_detached(ens, cores=1, allow_multiple=True)
    wait_for(lambda: open_attempts(ens), "manager A to start run 1")
    b = start_detached(ens, cores=1, allow_multiple=True, timeout=0.02)
    wait_for(lambda: is_gone(b), "manager B to stop at its time limit")
    assert run_row(ens, 2)["step"] == 1, "B finished step 0 and was interrupted in step 1"
    gate_step1.touch()
    gate_a.touch()
    wait_manager_exit(ens, a)
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS}
    assert log.read_text().split() == ["step0"], "step 0 ran once"
    attempts = ens.attempts(2)
    assert [(x["step"], x["attempt"], x["outcome"]) for x in attempts] == [
        (0, 1, "success"), (1, 2, "interrupted"), (1, 3, "success")]

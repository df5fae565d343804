"""Faults around one manager: exits racing interrupts and timeouts, inbox commands racing exits,
hook workers that cannot be replaced, inherited descriptors, a full file system, processes that
escape their group, launch errors, start-up commands and signals, restart backoff, the rollback
journal and on_completion errors."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from engine_helpers import (
    create,
    events,
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
from fault_helpers import (
    db_lock,
    freeze_outside_transaction,
    in_sleep_syscall,
    manager_log,
    manager_out,
    options_json,
    signal_pending,
    spawn_manager,
    thaw,
)

from ensemble import Ensemble, EnsembleError, Step
from ensemble.alloc.execution import _spawn_detached
from ensemble.engine import EXIT_MAX_FAILED, EXIT_RUNS_FAILED
from ensemble.setup import control
from ensemble.status import RunStatus
from ensemble.store.lease import live_leases

SUCCESS, FAILURE, QUEUED = RunStatus.SUCCESS, RunStatus.FAILURE, RunStatus.QUEUED


def session_id(pid: int) -> int | None:
    """The session id of ``pid`` (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[3])
    except OSError:
        return None


def step_pid(ens, run_id: int) -> int:
    return wait_for(lambda: next((a["pid"] for a in open_attempts(ens) if a["run_id"] == run_id and a["pid"]), None),
                    f"run {run_id}'s step to be running")


def block_manager_on_the_database(ens, pid: int) -> None:
    """With the test holding the write lock: post a (harmlessly rejected) inbox command, so the
    manager's next inbox poll waits for the lock, and wait until it does."""
    control.post(ens.setup_dir, {"op": "no-such-op-from-the-test"})
    wait_for(lambda: in_sleep_syscall(pid), "the manager to wait for the database lock")


# -- defect 3: an exit 0 racing an interrupt or the step's own timeout --------------------------------
@pytest.mark.parametrize("trigger", ["sigterm", "timeout"])
def test_exit_0_in_the_same_turn_as_an_interrupt_is_success(fdir, trigger):  # defect 3
    gate = fdir / "gate"
    limits = {"timeout": 0.01} if trigger == "timeout" else {}
    ens = create([run(1, sh(wait_file(gate), **limits))])
    a = spawn_manager(ens, cores=1)
    pid = step_pid(ens, 1)
    with db_lock(ens) as lock:
        # The manager is held inside a write (not in its loop), so it cannot act on what follows
        # until the lock is released: then the step's exit and the interrupt are both pending.
        block_manager_on_the_database(ens, a.pid)
        if trigger == "sigterm":
            os.kill(a.pid, signal.SIGTERM)
            wait_for(lambda: not signal_pending(a.pid, signal.SIGTERM), "SIGTERM to reach the manager")
        else:
            start = ens.attempts(1)[0]["start"]
            # The step's 0.6 s timeout is past (a bound on the clock, not a race: the manager
            # is held until we release it).
            wait_for(lambda: time.time() > start + 0.6 + 0.5, "the step's timeout to pass")
        gate.touch()
        wait_for(lambda: proc_state(pid) == "Z", "the step to exit (a zombie of the held manager)")
        lock.release()
        code = a.wait()
    assert code == (128 + signal.SIGTERM if trigger == "sigterm" else 0)
    attempts = ens.attempts(1)
    assert [(x["outcome"], x["exit_code"]) for x in attempts] == [("success", 0)]
    assert run_row(ens, 1)["status"] is SUCCESS
    execute(ens, cores=1)
    assert len(ens.attempts(1)) == 1, "a run whose step exited 0 is not run again"


# -- defect 4: inbox commands and exits in the same turn ------------------------------------------------
def test_dequeue_posted_after_the_step_exited_agrees_with_its_attempt(fdir):  # defect 4
    gate = fdir / "gate"
    ens = create([run(1, sh(wait_file(gate))), run(2, sh("true"))])
    a = spawn_manager(ens, cores=1)
    pid = step_pid(ens, 1)
    freeze_outside_transaction(a.pid, ens)
    gate.touch()
    wait_for(lambda: proc_state(pid) == "Z", "the step to exit 0 while its manager is frozen")
    ens.dequeue_runs([1])  # the manager lives: posted to its inbox
    thaw(a.pid)
    assert a.wait() == 0
    # The step finished before the dequeue was asked for: success, and both records agree.
    assert [x["outcome"] for x in ens.attempts(1)] == ["success"]
    assert run_row(ens, 1)["status"] is SUCCESS
    assert run_row(ens, 2)["status"] is SUCCESS


def test_max_failed_runs_counts_failures_of_one_turn(fdir):  # defect 4
    gate = fdir / "gate"
    failing = [run(i, sh(f"{wait_file(gate)}; exit 1")) for i in (1, 2, 3)]
    ens = create(failing + [run(i, sh("true")) for i in range(4, 9)], max_failed_runs=1)
    a = spawn_manager(ens, cores=3)
    pids = [step_pid(ens, i) for i in (1, 2, 3)]
    freeze_outside_transaction(a.pid, ens)
    gate.touch()
    wait_for(lambda: all(proc_state(p) == "Z" for p in pids), "the three steps to fail")
    thaw(a.pid)
    assert a.wait() == EXIT_MAX_FAILED
    status = statuses(ens)
    assert all(status[i] is FAILURE for i in (1, 2, 3))
    assert all(status[i] is QUEUED for i in range(4, 9)), "nothing launches once the limit is exceeded"
    assert {x["run_id"] for x in ens.attempts()} == {1, 2, 3}
    assert any("max_failed_runs" in e["detail"]["reason"] for e in events(ens, "stopping"))
    assert not any(e["kind"] == "on_completion" for e in ens.events())


# -- defect 5: a hook worker dies and cannot be replaced ----------------------------------------------------
def test_hook_worker_that_cannot_be_respawned_fails_waiting_runs_only(fdir):  # defect 5
    gate = fdir / "gate"
    iface = fdir / "iface.py"
    iface.write_text(
        "import os\n"
        "def prep_run(sample):\n"
        "    if sample['x'] == 2:\n"
        f"        with open({str(iface)!r}, 'w') as f:\n"
        "            f.write(\"raise RuntimeError('interface broken on respawn')\\n\")\n"
        "        os._exit(1)\n")
    ens = create([run(1, sh(wait_file(gate)))] + [run(x, sh("true")) for x in (2, 3, 4)],
                 app_interface="iface.py")
    # One worker: run 1's prep_run, then run 2's (which breaks the interface and dies), while
    # runs 3 and 4 wait in the backlog for a worker.
    a = spawn_manager(ens, cores=4, parallelism=1)
    wait_for(lambda: a.popen.poll() is not None or all(statuses(ens)[i] is FAILURE for i in (2, 3, 4)),
             "runs 2-4 to fail (or the manager to exit)")
    assert a.popen.poll() is None, f"the manager exited with {a.popen.returncode}: {manager_out(ens)[-300:]}"
    assert statuses(ens)[1] is QUEUED and [x["run_id"] for x in open_attempts(ens)] == [1], \
        "run 1's step, started before the crash, runs on"
    gate.touch()
    assert a.wait() == EXIT_RUNS_FAILED
    assert statuses(ens) == {1: SUCCESS, 2: FAILURE, 3: FAILURE, 4: FAILURE}
    assert "hook worker died" in run_row(ens, 2)["message"]
    for run_id in (3, 4):
        row = run_row(ens, run_id)
        log = Path(row["run_dir"], "ensemble.prep_run.log")
        text = (row["message"] or "") + (log.read_text() if log.exists() else "")
        assert "interface broken on respawn" in text, row
    assert {x["run_id"] for x in ens.attempts()} == {1}
    assert "Traceback" not in manager_out(ens)


# -- defect 7: what a step inherits ---------------------------------------------------------------------
def test_steps_inherit_only_standard_fds_and_no_pmi_variables(fdir):  # defect 7
    probe = ("import json, os\n"
             "fds = {}\n"
             "for f in os.listdir('/proc/self/fd'):\n"
             "    try:\n        fds[f] = os.readlink('/proc/self/fd/' + f)\n"
             "    except OSError:\n        pass\n"
             "json.dump({'fds': fds, 'env': dict(os.environ)}, open('seen.json', 'w'))\n")
    ens = create([run(1, py(probe))])
    driver = ("import os, sys\n"
              "fd = os.open('/dev/null', os.O_RDONLY)\n"
              "os.set_inheritable(fd, True)\n"
              "os.environ.update(PMI_RANK='3', PMIX_NAMESPACE='x', PMI_FD='4')\n"
              "from ensemble import Ensemble\n"
              "Ensemble(sys.argv[1]).execute_local(blocking=True, cores=1, timeout=0.75)\n")
    done = subprocess.run([sys.executable, "-c", driver, str(ens.setup_dir)], timeout=60)
    assert done.returncode == 0
    assert statuses(ens) == {1: SUCCESS}
    seen = json.loads(Path(run_row(ens, 1)["run_dir"], "seen.json").read_text())
    assert sorted(seen["fds"]) == ["0", "1", "2"], seen["fds"]
    assert not [k for k in seen["env"] if k.startswith(("PMI_", "PMIX_"))]


# -- defect 8: the file system fills up -------------------------------------------------------------------
@pytest.fixture
def small_fs(fdir):
    mnt = fdir / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        from fault_helpers import _cleanup_managers
        _cleanup_managers(fdir)
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_file_system_exits_74_with_one_clear_line(fdir, small_fs, monkeypatch):  # defect 8
    monkeypatch.chdir(small_fs)
    fill = 'dd if=/dev/zero of=filler bs=1M count=64 2>/dev/null; true'
    ens = Ensemble.create(runs=[run(1, sh("true")), run(2, sh(fill))] + [run(i, sh("true")) for i in range(3, 7)],
                          setup_dir=small_fs / "setup")
    # The logs live on a disk with room, so the manager can say what happened.
    logs = fdir / "logs"
    shutil.move(str(ens.setup_dir / "logs"), logs)
    (ens.setup_dir / "logs").symlink_to(logs)
    a = spawn_manager(ens, wait_lease=False, cores=1)
    assert a.wait() == 74, manager_out(ens)[-300:]
    full = [line for line in manager_log(ens).splitlines() if " ERROR " in line and "full" in line.lower()]
    assert len(full) == 1, manager_log(ens)
    assert "Traceback" not in manager_out(ens)
    os.unlink(small_fs / "runs" / "2" / "filler")
    ens = Ensemble(ens.setup_dir)
    assert run_row(ens, 1)["status"] is SUCCESS, "what was committed stays"
    # Even a one-row delete may not fit on a full disk: a lease left behind must be seen as dead.
    assert not live_leases(ens.store)
    ens.dequeue_runs([2])  # it would fill the disk again
    ens.execute_local(blocking=True, cores=1, timeout=0.5)
    assert all(s is SUCCESS for i, s in statuses(ens).items() if i != 2), "the next manager finishes the rest"
    assert not ens.store.leases()


# -- defect 10: a process that escaped its step's group -----------------------------------------------------
def test_setsid_escapee_is_killed_before_its_step_ends(fdir):  # defect 10
    tok, gate = token(), fdir / "gate"
    # The escapee writes its pid once it has left the step's session (so it cannot be caught by
    # the group kill by luck); the step ends only after that.
    escape = (f"setsid sh -c 'echo $$ > escaped.pid; exec {long_sleep(tok)}' & "
              "while [ ! -s escaped.pid ]; do sleep 0.02; done")
    ens = create([run(1, sh(escape)), run(2, sh(wait_file(gate)))])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: statuses(ens)[1] is SUCCESS, "run 1 to succeed")
    escaped = int(Path(run_row(ens, 1)["run_dir"], "escaped.pid").read_text())
    assert session_id(escaped) in (None, escaped), "the escapee leads its own session"
    wait_for(lambda: is_gone(escaped), "the escaped process to be killed", deadline=10)
    assert proc_state(pid) not in (None, "Z"), "the manager still runs (run 2 waits)"
    gate.touch()
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {1: SUCCESS, 2: SUCCESS}


def zombie_children(pid: int) -> list[int]:
    """Children of ``pid`` that are zombies."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(c) for c in children if proc_state(int(c)) == "Z"]


def test_adopted_orphans_are_reaped_not_left_as_zombies(fdir):  # defect 10
    # Runs 1-3 leave a background process in their group; the group is killed when the step
    # ends and the dead processes, adopted by the manager (the subreaper), are reaped at the
    # next step end: a long ensemble must not pile up zombies.
    gate4, gate5 = fdir / "gate4", fdir / "gate5"
    leave = f"( exec {long_sleep(token())} ) & echo started"
    ens = create([run(i, sh(leave)) for i in (1, 2, 3)] + [run(4, sh(wait_file(gate4))), run(5, sh(wait_file(gate5)))])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: all(statuses(ens)[i] is SUCCESS for i in (1, 2, 3)), "runs 1-3 to succeed")
    gate4.touch()
    wait_for(lambda: statuses(ens)[4] is SUCCESS, "run 4 to succeed")
    assert zombie_children(pid) == [], "the step end reaped every dead adopted process"
    gate5.touch()
    wait_manager_exit(ens, pid)


# -- defect 11: launch errors of any kind fail only their run -----------------------------------------------------
def test_launch_errors_of_any_type_fail_only_their_run(fdir):  # defect 11
    (fdir / "a_file").write_text("not a directory\n")
    script = fdir / "deck.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    ens = create([
        run(1, Step(["/no/such/program"], batch_script=False)),          # OSError at exec
        run(2, sh("true", cwd=str(fdir / "a_file" / "sub"))),            # cwd cannot be created
        run(3, Step([str(script)], batch_script=True)),                  # UnicodeDecodeError (a ValueError)
        run(4, sh("echo good > good.txt")),
    ])
    script.write_bytes(b"#!/bin/sh\n\xff\xfe broken after create\n")  # rendered only at launch
    a = spawn_manager(ens, wait_lease=False, cores=1)
    assert a.wait() == EXIT_RUNS_FAILED, manager_out(ens)[-300:]
    status = statuses(ens)
    assert status[4] is SUCCESS
    assert Path(run_row(ens, 4)["run_dir"], "good.txt").read_text() == "good\n"
    for run_id in (1, 2, 3):
        row = run_row(ens, run_id)
        assert row["status"] is FAILURE and row["message"], row
        assert [x["outcome"] for x in ens.attempts(run_id)] == ["launch_error"]
    assert "Traceback" not in manager_out(ens)


# -- defect 13: start-up commands and signals, busy managers, restart backoff ---------------------------------------
def test_stop_already_in_the_inbox_is_honoured(fdir):  # defect 13
    ens = create([run(i, sh("true")) for i in (1, 2)])
    control.post(ens.setup_dir, {"op": "stop"})  # no manager: it waits in the inbox
    execute(ens, cores=1)
    assert not ens.attempts(), "a stop posted before the manager started launches nothing"
    assert statuses(ens) == {1: QUEUED, 2: QUEUED}
    assert not ens.store.leases()


def test_sigterm_during_a_blocking_prep_ensemble_gives_143(fdir):  # defect 13
    gate, started = fdir / "gate", fdir / "prep_ensemble_started"
    (fdir / "iface.py").write_text(
        "import os, time\n"
        "def prep_ensemble():\n"
        f"    open({str(started)!r}, 'w').close()\n"
        f"    while not os.path.exists({str(gate)!r}):\n"
        "        time.sleep(0.02)\n")
    ens = create([run(1, sh("true"))], app_interface="iface.py")
    a = spawn_manager(ens, wait_lease=False, cores=1)
    wait_for(started.exists, "prep_ensemble to start")
    os.kill(a.pid, signal.SIGTERM)
    assert a.wait() == 128 + signal.SIGTERM
    assert not ens.attempts()
    assert statuses(ens) == {1: QUEUED}
    assert not ens.store.leases()
    assert ens.store.get_meta("prep_ensemble_done") is None


def test_refused_detached_manager_leaves_the_winners_pid_file(fdir):  # defect 13
    gate = fdir / "gate"
    ens = create([run(1, sh(wait_file(gate)))])
    pid = start_detached(ens, cores=1)
    pid_file = ens.setup_dir / "manager.pid"
    wait_for(pid_file.exists, "the manager to write manager.pid")
    with pytest.raises(EnsembleError):
        _spawn_detached(ens.setup_dir, json.loads(options_json(cores=1)))
    assert pid_file.exists(), "the refused manager deleted the winner's manager.pid"
    assert pid_file.read_text().strip() == str(pid)
    gate.touch()
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {1: SUCCESS}
    assert not pid_file.exists()


def test_unlimited_restarts_back_off(fdir):  # defect 13
    ens = create([run(1, sh("exit 1"))], max_restarts=None)
    execute(ens, cores=1, timeout=0.05)  # 3 s
    # Without a backoff the step restarts hundreds of times in 3 s; with one (doubling from a
    # fraction of a second) a handful.  30 is a generous bound, not a timing assertion.
    count = len(ens.attempts(1))
    assert 2 <= count < 30, count
    assert statuses(ens) == {1: QUEUED}


# -- the rollback journal (network file systems) ------------------------------------------------------------------------
def test_rollback_journal_with_a_concurrent_reader(fdir, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_JOURNAL_MODE", "DELETE")
    ens = create([run(i, sh("true")) for i in range(1, 51)])
    conn = sqlite3.connect(ens.setup_dir / "ensemble.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "delete"
    finally:
        conn.close()
    stop, errors, reads = threading.Event(), [], [0]

    def reader() -> None:
        try:
            with Ensemble(ens.setup_dir) as other:
                while not stop.is_set():
                    other.progress()
                    reads[0] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        execute(ens, cores=4)
    finally:
        stop.set()
        thread.join(30)
    assert not errors
    assert reads[0] > 0
    assert statuses(ens) == {i: SUCCESS for i in range(1, 51)}


# -- on_completion errors ---------------------------------------------------------------------------------------------
def test_on_completion_that_cannot_start_is_recorded(fdir):
    ens = create([run(1, sh("true"))])
    ens.on_completion(["/no/such/on_completion_program"])
    a = spawn_manager(ens, wait_lease=False, cores=1)
    assert a.wait() == 0
    failed = events(ens, "on_completion_failed")
    assert len(failed) == 1 and failed[0]["detail"]["args"] == ["/no/such/on_completion_program"]
    assert "Traceback" not in manager_out(ens)


def test_failing_on_completion_records_its_exit_code(fdir):
    ens = create([run(1, sh("true"))])
    ens.on_completion(["sh", "-c", "exit 3"])
    a = spawn_manager(ens, wait_lease=False, cores=1)
    assert a.wait() == 0
    assert [e["detail"]["exit_code"] for e in events(ens, "on_completion")] == [3]


# -- promises of the execution API ------------------------------------------------------------------
def test_kill_grace_sets_the_time_between_sigterm_and_sigkill(fdir):
    # The step ignores SIGTERM.  Its timeout (0.6 s) plus a 0.3 s grace ends it by SIGKILL long
    # before the manager's own 3 s limit; with the 3 s default the limit would come first and
    # the attempt would be "interrupted" instead.
    ens = create([run(1, sh("trap '' TERM; sleep 30", timeout=0.01))])
    execute(ens, cores=1, timeout=0.05, kill_grace=0.3)
    attempt = ens.attempts(1)[0]
    assert (attempt["outcome"], attempt["signal"]) == ("timeout", signal.SIGKILL)
    assert statuses(ens)[1] is RunStatus.FAILURE


def test_a_blocking_manager_stops_when_its_caller_dies(fdir):
    # A blocking execute runs its manager as a child tied to the caller (SIGTERM on the caller's
    # death): even a SIGKILLed caller leaves no manager running on its own.
    tok = token()
    ens = create([run(1, sh(f"exec {long_sleep(tok)}"))])
    code = ("import sys; from ensemble import Ensemble; "
            "Ensemble(sys.argv[1]).execute_local(blocking=True, cores=1, timeout=0.75)")
    caller = subprocess.Popen([sys.executable, "-c", code, str(ens.setup_dir)])
    try:
        wait_for(lambda: [a for a in open_attempts(ens) if a["pid"]], "the step to run")
        manager = ens.store.leases()[0]["pid"]
        caller.kill()
    finally:
        caller.wait()
    wait_for(lambda: is_gone(manager), "the manager to stop after its caller died")
    assert [a["outcome"] for a in ens.attempts(1)] == ["interrupted"]
    assert statuses(ens)[1] is RunStatus.QUEUED and not ens.store.leases()
    assert not pids_with(tok)


def test_a_detached_manager_with_nothing_to_do_starts_and_ends_cleanly(fdir):
    # Readiness is said on a pipe once the lease is held, so a manager that ends at once is
    # reported as started, not as "exited at start".
    ens = create([run(1, sh("true"))])
    execute(ens, cores=1)
    pid = start_detached(ens, cores=1)
    wait_manager_exit(ens, pid)
    assert [e["detail"]["reason"] for e in events(ens, "manager_stopped")] == [None, None]

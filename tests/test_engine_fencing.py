"""Fencing of managers: a manager that lost its lease writes nothing more; the lease of another
host is judged by its heartbeat; attempts are committed before their process starts and their
logs are never truncated; SIGTERM at any moment of a manager's life is handled."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from engine_helpers import (
    SETUP,
    create,
    execute,
    long_sleep,
    open_attempts,
    proc_state,
    py,
    run,
    run_row,
    sh,
    statuses,
    token,
    wait_file,
    wait_for,
)
from fault_helpers import (
    DbLock,
    db_lock,
    freeze_outside_transaction,
    has_open,
    in_sleep_syscall,
    live_tagged,
    manager_log,
    spawn_manager,
    thaw,
)

from ensemble import EnsembleBusy, ManagerFailed, cli
from ensemble.status import RunStatus

SUCCESS = RunStatus.SUCCESS


# defect 1: a manager whose lease was taken over aborts (exit 75) and writes nothing more
def test_manager_that_lost_its_lease_exits_75_and_writes_nothing_more(fdir):  # defect 1
    side = fdir / "side.log"
    runs = 30
    ens = create([run(i, sh(f'echo "$ENSEMBLE_RUN_ID $ENSEMBLE_MANAGER" >> {side}; sleep 0.05'))
                  for i in range(1, runs + 1)])
    a = spawn_manager(ens, env={"ENSEMBLE_HOSTNAME": "hostA"}, cores=2)
    wait_for(lambda: sum(s is SUCCESS for s in statuses(ens).values()) >= 5, "five runs to be done by A")
    freeze_outside_transaction(a.pid, ens)
    # What A had in flight when frozen: its attempts still open (their end is unknown to anyone),
    # chained ones included (its spawner starts them when the steps before them exit 0).
    in_flight = {x["run_id"] for x in ens.attempts() if x["end"] is None and x["manager"] == a.id}
    done_by_a = {i for i, s in statuses(ens).items() if s is SUCCESS}
    ens.store.conn.execute("UPDATE leases SET heartbeat = heartbeat - 3600 WHERE manager=?", (a.id,))

    b = spawn_manager(ens, env={"ENSEMBLE_HOSTNAME": "hostB"}, wait_lease=False, cores=2)
    assert b.wait() == 0, "B takes over the lease of the frozen manager on 'another host'"
    # A's steps in flight run on (only A is frozen); once they are gone, A's lines are final.
    wait_for(lambda: not live_tagged(a.id, steps_only=True), "A's in-flight steps to end")
    a_lines = [line for line in side.read_text().splitlines() if line.split()[1] == a.id]

    thaw(a.pid)
    assert a.wait() == 75, "a manager whose lease is gone exits 75"
    assert "lease lost" in manager_log(ens)
    wait_for(lambda: not live_tagged(a.id), "A's processes to be gone")

    assert statuses(ens) == {i: SUCCESS for i in range(1, runs + 1)}
    assert not ens.store.leases()
    assert all(r["claimed_by"] is None for r in ens.runs())
    seen = [line.split() for line in side.read_text().splitlines()]
    assert [line for line in seen if line[1] == a.id] == [line.split() for line in a_lines], \
        "A launched nothing after it was thawed"
    counts = Counter(int(rid) for rid, _ in seen)
    for run_id in range(1, runs + 1):
        # At-least-once only for steps in flight in a frozen manager; everything else exactly once.
        allowed = (1, 2) if run_id in in_flight else (1,)
        assert counts[run_id] in allowed, (run_id, counts[run_id], sorted(in_flight))
    attempts = ens.attempts()
    b_ids = {x["manager"] for x in attempts} - {a.id}
    assert len(b_ids) == 1
    for x in attempts:
        if x["manager"] == a.id:
            # A's attempts: finished before the freeze, or closed by B's recovery; A rewrote none.
            expected = "interrupted" if x["run_id"] in in_flight else "success"
            assert x["outcome"] == expected, x
        else:
            assert x["outcome"] == "success" and x["end"] is not None, x
    assert {x["run_id"] for x in attempts if x["manager"] in b_ids} == set(range(1, runs + 1)) - done_by_a


def test_lease_on_another_host_is_judged_by_its_heartbeat(fdir):  # defect 1
    ens = create([run(1, sh("true"))])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a pid that is not running here: only the heartbeat can say "alive"
    fresh = time.time()
    ens.store.conn.execute(
        "INSERT INTO leases(manager, host, pid, pid_start, started, heartbeat, allow_multiple) "
        "VALUES (?, ?, ?, ?, ?, ?, 0)", ("far:1:abc", "far-away-host", pid, "1", fresh, fresh))
    with pytest.raises(EnsembleBusy):
        execute(ens, cores=1)
    assert not ens.attempts()
    ens.store.conn.execute("UPDATE leases SET heartbeat = heartbeat - 3600")
    execute(ens, cores=1)
    assert statuses(ens) == {1: SUCCESS}
    assert not ens.store.leases()


# defect 2: the attempt row is committed before the step starts; logs are opened O_EXCL
def test_attempt_is_committed_before_its_step_starts_and_logs_survive_resume(fdir):  # defect 2
    tok, gate = token(), fdir / "gate"
    (fdir / "iface.py").write_text(
        "import os, time\n"
        f"GATE = {str(gate)!r}\n"
        "def prep_run():\n"
        "    open('prep_started', 'w').close()\n"
        "    while not os.path.exists(GATE):\n"
        "        time.sleep(0.02)\n")
    step = sh(f'if [ ! -e killed_once ]; then touch killed_once; echo started; exec {long_sleep(tok)}; fi; '
              'echo second')
    ens = create([run(1, step)], app_interface="iface.py")
    run_dir = Path(run_row(ens, 1)["run_dir"])
    out1 = run_dir / "ensemble.step0.attempt1.out"
    # Without a keeper: the killed manager's step is not adopted but killed and run again.
    a = spawn_manager(ens, env={"ENSEMBLE_KEEPER": "0"}, cores=1)
    wait_for((run_dir / "prep_started").exists, "prep_run to start")

    lock = DbLock(ens)
    try:
        gate.touch()

        def started() -> bool:
            return out1.exists() and "started" in out1.read_text()

        # Either the step starts (today's engine: it spawns first, records the attempt later) or
        # the manager waits for the lock to record the attempt first, with no step process yet.
        state = wait_for(lambda: "started" if started() else
                         ("blocked" if in_sleep_syscall(a.pid) and not live_tagged(a.id, steps_only=True)
                          else None), "the step to start or the manager to wait for the lock")
        if state == "blocked":
            lock.release()
        wait_for(started, "the step to start")
        os.kill(a.pid, signal.SIGKILL)
        a.wait()
    finally:
        lock.release()

    rows = ens.attempts(1)
    assert [(x["step"], x["attempt"], x["end"]) for x in rows] == [(0, 1, None)], \
        "the attempt of a running step is in the database when its manager dies"

    b = spawn_manager(ens, wait_lease=False, cores=1)
    assert b.wait() == 0
    assert run_row(ens, 1)["status"] is SUCCESS
    assert [(x["attempt"], x["outcome"]) for x in ens.attempts(1)] == [(1, "interrupted"), (2, "success")]
    assert out1.read_text() == "started\n", "a later manager never truncates an earlier attempt's log"
    assert (run_dir / "ensemble.step0.attempt2.out").read_text() == "second\n"


# defect 12: SIGTERM at any moment of a manager's life
def test_sigterm_while_the_manager_waits_for_its_lease(fdir):  # defect 12
    ens = create([run(1, sh("true"))])
    with db_lock(ens) as lock:
        a = spawn_manager(ens, wait_lease=False, cores=1)
        wait_for(lambda: has_open(a.pid, "ensemble.db") and in_sleep_syscall(a.pid),
                 "the manager to wait for the database lock")
        os.kill(a.pid, signal.SIGTERM)
        lock.release()
        code = a.wait()
    assert code == 128 + signal.SIGTERM
    assert not ens.store.leases()
    assert not (ens.setup_dir / "manager.pid").exists()
    assert statuses(ens) == {1: RunStatus.QUEUED}
    assert all(r["claimed_by"] is None for r in ens.runs())


def test_repeated_sigterm_until_exit_gives_143(fdir):  # defect 12
    gate = fdir / "gate"
    ens = create([run(i, sh(wait_file(gate))) for i in range(1, 4)])
    a = spawn_manager(ens, cores=2)
    wait_for(lambda: len(open_attempts(ens)) == 2, "two runs to be running")
    while a.popen.poll() is None:
        try:
            os.kill(a.pid, signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    assert a.wait() == 128 + signal.SIGTERM
    assert not ens.store.leases()
    assert not (ens.setup_dir / "manager.pid").exists()
    assert statuses(ens) == {i: RunStatus.QUEUED for i in range(1, 4)}
    assert proc_state(a.pid) is None



def test_a_lost_lease_stops_a_blocking_manager_and_the_cli_reports_75(fdir):  # defect 1
    db = Path(SETUP).resolve() / "ensemble.db"
    # The step deletes its own manager's lease, as a takeover by another manager would.
    steal = py(f"import sqlite3; sqlite3.connect({str(db)!r}, isolation_level=None).execute('DELETE FROM leases')")
    ens = create([run(1, steal), run(2, sh("true"))])
    with pytest.raises(ManagerFailed) as failed:
        ens.execute_local(blocking=True, cores=1, timeout=0.5)
    assert failed.value.exit_code == 75
    assert "lease lost" in manager_log(ens)
    assert not ens.attempts(2), "a fenced-off manager starts nothing more"
    assert [a["outcome"] for a in ens.attempts(1)] == [None], "its end was never written"
    code = cli.main(["--setup-dir", str(ens.setup_dir), "execute", "--block", "--cores", "1", "--timeout", "0.5"])
    assert code == 75, "the CLI's exit status is the manager's"
    assert [a["outcome"] for a in ens.attempts(1)] == ["interrupted", None], "the next manager closed the first"

"""Chained starts: the spawner starts a recorded attempt the moment the step before it on the same
placement exits 0 (ensemble/engine/chain.py); anything else cancels it and it never existed."""
from __future__ import annotations

import os
import select
import signal
from pathlib import Path

import pytest
from engine_helpers import (
    attempts_by_run,
    create,
    events,
    execute,
    placed,
    proc_state,
    run,
    sh,
    start_detached,
    statuses,
    wait_file,
    wait_for,
    wait_manager_exit,
)
from spawner_helpers import Spawner, needs_spawner

from ensemble.engine.chain import CHAIN_DEPTH, LINGER_MAX, LINGER_SHARE, Chains
from ensemble.setup import control
from ensemble.status import RunStatus


@pytest.fixture(autouse=True)
def _needs_spawner() -> None:
    needs_spawner()


@pytest.fixture
def spawner():
    s = Spawner()
    yield s
    if s.popen.poll() is None:
        s.close()


def _silent(spawner: Spawner, seconds: float = 0.3) -> bool:
    """Nothing more comes from the spawner for a while (it never wrongly starts a chained step)."""
    return not spawner.pending and not select.select([spawner.popen.stdout], [], [], seconds)[0]


def _chain(spawner: Spawner, key: int, after: int, where: Path, argv: list[str] | None = None) -> None:
    request = {"op": "start", "id": key, "after": after, "argv": argv or ["sh", "-c", f"echo {key}"],
               "cwd": str(where), "env": {}, "stdout": str(where / f"{key}.out"), "stderr": str(where / f"{key}.err"),
               "tag": f"t/{key}.1"}
    spawner.send(**request)


# -- the protocol ----------------------------------------------------------------------------------
def test_a_chained_start_waits_for_its_predecessor_and_starts_when_it_exits_0(spawner, tmp_path):
    gate = tmp_path / "gate"
    spawner.start(1, ["sh", "-c", wait_file(gate)], tmp_path)
    _chain(spawner, 2, 1, tmp_path)
    _chain(spawner, 3, 2, tmp_path)
    assert _silent(spawner), "nothing chained starts while its predecessor runs"
    assert not (tmp_path / "2.out").exists()
    gate.touch()
    first = spawner.recv()
    assert first["op"] == "exit"
    messages = [spawner.recv() for _ in range(4)]
    assert [m["op"] for m in messages] == ["started", "exit", "started", "exit"]
    assert (tmp_path / "2.out").read_text() == "2\n" and (tmp_path / "3.out").read_text() == "3\n"
    # Each start says when it began: after the end it waited for, before its own end.
    assert first["end"] <= messages[0]["start"] <= messages[1]["end"] <= messages[2]["start"] <= messages[3]["end"]


def test_a_failed_predecessor_cancels_the_whole_chain_behind_it(spawner, tmp_path):
    gate = tmp_path / "gate"
    spawner.start(1, ["sh", "-c", wait_file(gate) + "; exit 5"], tmp_path)
    _chain(spawner, 2, 1, tmp_path)
    _chain(spawner, 3, 2, tmp_path)
    gate.touch()
    assert spawner.recv()["code"] == 5
    assert [spawner.recv() for _ in range(2)] == [{"op": "cancelled", "id": 2}, {"op": "cancelled", "id": 3}]
    assert _silent(spawner)
    assert not (tmp_path / "2.out").exists() and not (tmp_path / "3.out").exists()


def test_a_signal_or_cancel_takes_a_waiting_start_back_and_the_predecessor_runs_on(spawner, tmp_path):
    gate = tmp_path / "gate"
    spawner.start(1, ["sh", "-c", wait_file(gate)], tmp_path)
    _chain(spawner, 2, 1, tmp_path)
    _chain(spawner, 3, 2, tmp_path)
    spawner.send(op="signal", id=2, sig=int(signal.SIGTERM))
    assert [spawner.recv() for _ in range(2)] == [{"op": "cancelled", "id": 2}, {"op": "cancelled", "id": 3}]
    _chain(spawner, 4, 1, tmp_path)
    spawner.send(op="cancel", id=4)
    assert spawner.recv() == {"op": "cancelled", "id": 4}
    spawner.send(op="cancel", id=1)  # a running step: cancel does nothing to it
    assert _silent(spawner)
    gate.touch()
    end = spawner.recv()
    assert end["op"] == "exit" and end["id"] == 1 and end["code"] == 0
    assert _silent(spawner)


def test_a_chained_start_is_cancelled_when_the_inbox_changed_meanwhile(spawner, tmp_path):
    inbox, gate = tmp_path / "inbox", tmp_path / "gate"
    inbox.mkdir()
    seen = str(inbox.stat().st_mtime_ns)
    spawner.start(1, ["sh", "-c", wait_file(gate)], tmp_path)
    spawner.send(op="start", id=2, after=1, inbox=str(inbox), seen=seen, argv=["/bin/true"], cwd=str(tmp_path),
                 env={}, stdout=str(tmp_path / "2.out"), stderr=str(tmp_path / "2.err"), tag="t/2.1")
    (inbox / "stop.json").write_text("{}")
    gate.touch()
    assert spawner.recv()["code"] == 0
    assert spawner.recv() == {"op": "cancelled", "id": 2}
    spawner.send(op="start", id=3, after=1, inbox=str(inbox), seen=str(inbox.stat().st_mtime_ns),
                 argv=["/bin/true"], cwd=str(tmp_path), env={}, stdout=str(tmp_path / "3.out"),
                 stderr=str(tmp_path / "3.err"), tag="t/3.1")
    assert spawner.recv()["op"] == "started", "an inbox as the manager last saw it lets the start go"


def test_a_start_chained_after_an_end_already_known_starts_at_once_or_never(spawner, tmp_path):
    spawner.start(1, ["/bin/true"], tmp_path)
    assert spawner.recv()["code"] == 0
    spawner.start(2, ["/bin/false"], tmp_path)
    assert spawner.recv()["code"] == 1
    _chain(spawner, 3, 1, tmp_path)
    assert spawner.recv()["op"] == "started" and spawner.recv()["code"] == 0
    _chain(spawner, 4, 2, tmp_path)
    assert spawner.recv() == {"op": "cancelled", "id": 4}
    _chain(spawner, 5, 99, tmp_path)
    assert spawner.recv() == {"op": "cancelled", "id": 5}


def test_a_chained_start_that_cannot_start_ends_with_its_error_and_cancels_what_follows(spawner, tmp_path):
    spawner.start(1, ["/bin/true"], tmp_path)
    _chain(spawner, 2, 1, tmp_path, ["no-such-program-here"])
    _chain(spawner, 3, 2, tmp_path)
    assert spawner.recv()["code"] == 0
    assert spawner.recv() == {"op": "exit", "id": 2,
                              "error": "[Errno 2] No such file or directory: 'no-such-program-here'"}
    assert spawner.recv() == {"op": "cancelled", "id": 3}


def test_at_end_of_file_a_waiting_start_never_starts(spawner, tmp_path):
    gate = tmp_path / "gate"
    pid = spawner.start(1, ["sh", "-c", wait_file(gate)], tmp_path)["pid"]
    _chain(spawner, 2, 1, tmp_path)
    assert spawner.close() == 0
    gate.touch()
    wait_for(lambda: not Path(f"/proc/{pid}/cmdline").exists() or _zombie(pid), "the step ends")
    assert not (tmp_path / "2.out").exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# -- the engine --------------------------------------------------------------------------------------
#: On one core, the runs chained behind run 5 while it waits for its gate (see :func:`_gated`).
CHAINED = set(range(6, 6 + CHAIN_DEPTH))
COUNT = 5 + CHAIN_DEPTH + 2


def _gated(edir: Path, fail: frozenset[int] = frozenset()) -> tuple[Path, list]:
    """Runs 1-4 are short (the manager chains only behind short steps), run 5 waits for a gate, so
    on one core the manager chains :data:`CHAINED` behind it; run i in ``fail`` exits 1."""
    gate = edir / "gate"
    runs = []
    for i in range(1, COUNT + 1):
        wait = wait_file(gate) + "; " if i == 5 else ""
        runs.append(run(i, sh(f"{wait}echo $ENSEMBLE_ATTEMPT > seen; exit {int(i in fail)}")))
    return gate, runs


def _chained_ids(ens) -> set[int]:
    """Runs whose attempt is recorded but not started (chained behind a running step)."""
    return {a["run_id"] for a in ens.attempts() if a["outcome"] == "chained"}


def _start_chained(edir: Path, fail: frozenset[int] = frozenset()):
    gate, runs = _gated(edir, fail)
    ens = create(runs)
    pid = start_detached(ens, cores=1)
    wait_for(lambda: _chained_ids(ens) == CHAINED, f"{CHAIN_DEPTH} starts chained behind the running step")
    return gate, ens, pid


def test_the_manager_chains_the_next_runs_behind_a_running_step(edir):
    gate, ens, pid = _start_chained(edir)
    assert all(a["pid"] is None for a in ens.attempts() if a["outcome"] == "chained")
    assert {r["id"] for r in ens.runs() if r["claimed_by"]} == {5, *CHAINED}
    gate.touch()
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, COUNT + 1)}
    attempts = ens.attempts()
    assert len(attempts) == COUNT and all(a["attempt"] == 1 and a["pid"] and a["end"] for a in attempts)
    assert all((edir / r["run_dir"] / "seen").read_text() == "1\n" for r in ens.runs())


def test_chained_steps_keep_one_step_per_core(edir):
    ens = create([run(i, sh("echo $ENSEMBLE_ATTEMPT > seen")) for i in range(1, 41)])
    execute(ens, cores=2)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, 41)}
    attempts = ens.attempts()
    assert len(attempts) == 40 and all(a["attempt"] == 1 and a["pid"] and a["end"] for a in attempts)
    assert all(a["start"] <= a["end"] for a in attempts), "a chained start is recorded as it began, not as seen"
    for a in attempts:
        for b in attempts:
            if a is not b and a["start"] < b["end"] and b["start"] < a["end"]:
                assert not set(placed(a, "cores")) & set(placed(b, "cores")), "a core runs one step at a time"


def test_the_runs_chained_behind_a_failed_step_run_later_as_if_never_chained(edir):
    gate, ens, pid = _start_chained(edir, fail=frozenset({5}))
    gate.touch()
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {i: RunStatus.FAILURE if i == 5 else RunStatus.SUCCESS for i in range(1, COUNT + 1)}
    by_run = attempts_by_run(ens)
    assert all(len(by_run[i]) == 1 and by_run[i][0]["attempt"] == 1 and by_run[i][0]["pid"] for i in by_run)
    assert all(a["end"] is not None for a in ens.attempts())
    assert all((edir / r["run_dir"] / "seen").read_text() == "1\n" for r in ens.runs())


def test_a_stop_takes_back_the_chained_starts_and_they_run_next_time(edir):
    gate, ens, pid = _start_chained(edir)
    control.post(ens.setup_dir, {"op": "stop"})
    wait_for(lambda: events(ens, "stopping") and not _chained_ids(ens), "the chained starts are taken back")
    assert sorted(a["run_id"] for a in ens.attempts()) == [1, 2, 3, 4, 5]
    gate.touch()
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {i: RunStatus.SUCCESS if i <= 5 else RunStatus.QUEUED for i in range(1, COUNT + 1)}
    assert all(r["claimed_by"] is None for r in ens.runs())
    pid = start_detached(ens, cores=1)
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, COUNT + 1)}
    assert all(len(a) == 1 for a in attempts_by_run(ens).values())


def test_the_chained_starts_of_a_killed_manager_never_existed(edir):
    gate, ens, pid = _start_chained(edir)
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: proc_state(pid) is None, "the killed manager to be reaped")
    gate.touch()
    execute(ens, cores=1)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, COUNT + 1)}
    by_run = attempts_by_run(ens)
    assert all([(a["attempt"], a["outcome"]) for a in by_run[i]] == [(1, "success")] for i in range(1, COUNT + 1))
    started = events(ens, "manager_started")[-1]["detail"]
    assert started["adopted_running"] + started["adopted_ended"] == 1 and started["recovered_attempts"] == 0


def test_a_dequeued_chained_run_never_starts(edir):
    gate, ens, pid = _start_chained(edir)
    ens.dequeue_runs([7])
    wait_for(lambda: 7 not in _chained_ids(ens), "the dequeued run's chained start is taken back")
    gate.touch()
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {i: RunStatus.KILLED if i == 7 else RunStatus.SUCCESS for i in range(1, COUNT + 1)}
    assert 7 not in attempts_by_run(ens)
    assert all(len(a) == 1 for a in attempts_by_run(ens).values())
    assert not (edir / ens.runs([7])[0]["run_dir"] / "seen").exists()


# -- lingering ---------------------------------------------------------------------------------------
class _Link:
    """A run in a chain, as far as lingering looks at it."""

    def __init__(self, pending: bool, after: _Link | None) -> None:
        self.pending, self.after = pending, after


def _waiting(count: int) -> _Link:
    """The tip of a chain of ``count`` waiting starts behind a running step."""
    run = _Link(False, None)
    for _ in range(count):
        run = _Link(True, run)
    return run


def _linger(tips: list[_Link], step_s: float | None) -> float:
    engine = Chains()
    engine.tips, engine.chained, engine.recent_step_s = set(tips), {tip for tip in tips if tip.pending}, step_s
    return engine.linger_s()


def test_the_manager_waits_for_a_share_of_what_the_shortest_chain_holds():
    assert _linger([_waiting(3), _waiting(5)], 0.001) == pytest.approx(LINGER_SHARE * 3 * 0.001)
    assert _linger([_waiting(16)], 10.0) == LINGER_MAX, "never longer than LINGER_MAX"


def test_the_manager_does_not_wait_while_a_core_may_fall_idle():
    assert _linger([_waiting(4), _waiting(0)], 0.001) == 0.0, "a chain with nothing waiting"
    assert _linger([_waiting(4)], None) == 0.0, "no step has ended yet"
    assert _linger([], 0.001) == 0.0

"""The pure parts of adoption: launch tags, keeper records, placements taken over."""
from __future__ import annotations

import json
import os
import threading
import time

from engine_helpers import wait_for

from ensemble.engine import adoption, keeper
from ensemble.executors import adopted
from ensemble.executors.adopted import find_record, launch_key, read_exits
from ensemble.executors.procs import children
from ensemble.providers.resources import Node, Pool
from ensemble.store.lease import proc_stat, process_start_time


def test_launch_key_reads_run_and_attempt_from_the_tag():
    assert launch_key("vm:12:ab12cd34/17.3") == (17, 3)
    assert launch_key("host.with.dots:1:x/2.10") == (2, 10)
    assert launch_key(None) is None
    assert launch_key("no-slash") is None
    assert launch_key("m/x.1") is None


def test_find_record_prefers_the_recorded_pid_then_the_oldest_process_of_the_attempt(monkeypatch):
    monkeypatch.setattr(adopted, "boot_time", lambda: 1000.0)
    tick = os.sysconf("SC_CLK_TCK")
    records = [
        {"pid": 50, "start": "900", "tag": "m/1.1", "exit": 0},   # an escaped child, started later
        {"pid": 40, "start": "800", "tag": "m/1.1", "exit": 3},   # the step itself
        {"pid": 41, "start": "100", "tag": "m/2.1", "exit": 0},
        {"pid": 60, "start": str(50 * tick), "tag": None, "signal": 9},  # ended before the keeper read it
    ]
    assert find_record(records, 1, 1)["pid"] == 40
    assert find_record(records, 1, 1, 50)["pid"] == 50
    assert find_record(records, 3, 1, 60, started=1049.5)["pid"] == 60, "untagged: its pid, started just after"
    assert find_record(records, 3, 1, 60, started=900.0) is None, "an older process that had the same pid"
    assert find_record(records, 3, 1, 60) is None, "no untagged match without the attempt's start"
    assert find_record(records, 2, 1, 60, started=1049.5)["pid"] == 41, "the attempt's own tag wins"
    assert find_record(records, 1, 2) is None


def test_read_exits_ignores_a_line_still_being_written(tmp_path):
    path = tmp_path / "vm-1.jsonl"
    header = {"keeper": 1, "keeper_start": "5"}
    path.write_text(json.dumps(header) + "\n" + json.dumps({"pid": 2, "tag": "m/1.1", "exit": 0}) + "\n"
                    + '{"pid": 3, "ta')
    assert read_exits(path) == (header, [{"pid": 2, "tag": "m/1.1", "exit": 0}])
    assert read_exits(tmp_path / "missing.jsonl") == (None, [])


def test_reserve_takes_exactly_the_free_part_of_an_earlier_placement():
    pool = Pool((Node("n1", (0, 1, 2, 3), ("0", "1")),))
    held = pool.allocate(1, 1, 0)
    assert held.cores == (0,)
    placement = pool.reserve([{"node": "n1", "tasks": 2, "cores": [0, 1, 2], "gpus": ["1"]},
                              {"node": "gone", "tasks": 1, "cores": [0], "gpus": []}])
    assert [(s.node, s.cores, s.gpus) for s in placement.shares] == [("n1", (1, 2), ("1",))]
    assert pool.free_cores["n1"] == [3] and pool.free_gpus["n1"] == ["0"]
    pool.release(placement)
    pool.release(held)
    assert pool.free_cores["n1"] == [0, 1, 2, 3] and pool.free_gpus["n1"] == ["0", "1"]


def _spawn(script: str) -> int:
    return os.posix_spawn("/bin/sh", ["sh", "-c", script], dict(os.environ))


def test_the_survey_knows_a_just_ended_step_by_its_recorded_pid_and_start_time():
    """A zombie has no environment left to carry its launch tag."""
    started = time.time()
    pid = _spawn("exit 4")
    try:
        wait_for(lambda: (proc_stat(pid) or ["?"])[0] == "Z", "the step to end")
        attempt = {"pid": pid, "start": started, "manager": "m", "run_id": 3, "attempt": 2}
        proc = adoption._ending(attempt)
        assert (proc.pid, proc.ppid, proc.tag) == (pid, os.getpid(), "m/3.2")
        assert adoption._has_zombie_child(os.getpid())
        assert adoption._ending({**attempt, "start": started + 3600}) is None, "a later attempt: pid reused"
    finally:
        os.waitpid(pid, 0)
    assert adoption._ending({"pid": None, "start": started, "manager": "m", "run_id": 3, "attempt": 2}) is None


def test_a_live_step_is_not_taken_for_an_ended_one():
    pid = _spawn("sleep 30")
    try:
        assert adoption._ending({"pid": pid, "start": time.time(), "manager": "m", "run_id": 1, "attempt": 1}) is None
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)


def test_the_keeper_records_a_step_that_showed_its_tag_only_after_the_first_look(tmp_path):
    """Between fork and exec a step still has its manager's environment (no tag): the keeper
    looks at such a child again instead of leaving it alone for good."""
    before = set(children(os.getpid()))
    pid = _spawn('sleep 0.3; exec env ENSEMBLE_MANAGER=mk ENSEMBLE_LAUNCH=mk/4.1 sh -c "sleep 0.3; exit 3"')
    path = tmp_path / "exits.jsonl"
    keeper._collect_orphans(path, "mk", before)
    assert [(r["pid"], r["tag"], r["exit"]) for r in read_exits(path)[1]] == [(pid, "mk/4.1", 3)]
    assert proc_stat(pid) is None, "the keeper reaps what it recorded"


def _later(delay: float, action) -> threading.Thread:
    thread = threading.Timer(delay, action)
    thread.start()
    return thread


def test_a_starting_manager_waits_for_the_keeper_of_a_dead_engine_to_settle(tmp_path):
    dead = _spawn("exit 0")
    os.waitpid(dead, 0)
    keeper_pid = _spawn("sleep 30")
    try:
        exits = tmp_path / "exits"
        exits.mkdir()
        path = exits / f"{adoption.HOST}-{dead}.jsonl"
        path.write_text(json.dumps({"keeper": keeper_pid, "keeper_start": process_start_time(keeper_pid)}) + "\n")
        writer = _later(0.3, lambda: path.open("a").write(json.dumps({"settled": 1.0}) + "\n"))
        adoption.wait_for_keepers(tmp_path, timeout=30)
        assert adopted.settled(path), "returned before the keeper said it had recorded what had ended"
        writer.join()
    finally:
        os.kill(keeper_pid, 9)
        os.waitpid(keeper_pid, 0)


def test_the_survey_waits_while_a_keeper_still_holds_an_ended_step():
    pid = _spawn("exit 0")
    wait_for(lambda: (proc_stat(pid) or ["?"])[0] == "Z", "the step to end")
    reaper = _later(0.3, lambda: os.waitpid(pid, 0))
    adoption._keepers_collecting({os.getpid(): None}, timeout=5)
    assert proc_stat(pid) is None, "returned while the keeper had not yet reaped (recorded) the step"
    reaper.join()

"""The node-local worker without Slurm: its JSON-lines protocol, a worker process driven over
pipes, and the engine driving workers started as plain local processes (one per fake node)."""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import DEADLINE, attempts_by_run, create, is_gone, run, sh, statuses, wait_file, wait_for
from worker_helpers import WORKER

from ensemble.alloc.routing import RoutedLauncher, on_worker
from ensemble.engine import EXIT_RUNS_FAILED
from ensemble.executors.wire import Lines, encode
from ensemble.launchers import LocalLauncher
from ensemble.providers.resources import Node, Pool
from ensemble.spec import Step
from ensemble.status import RunStatus

HELPER = Path(__file__).with_name("worker_helpers.py")


# -- the wire -------------------------------------------------------------------------------------
def test_lines_split_a_stream_into_messages_across_reads():
    data = encode({"op": "exit", "id": 1, "code": 0}) + encode({"op": "exit", "id": 2, "code": -9})
    lines = Lines()
    first = lines.feed(data[:7])
    rest = lines.feed(data[7:])
    assert first == [] and rest == [{"op": "exit", "id": 1, "code": 0}, {"op": "exit", "id": 2, "code": -9}]


def test_lines_skip_what_is_not_a_message():
    assert Lines().feed(b"hello\n[1]\n{\"x\": 1}\n\n" + encode({"op": "ready"})) == [{"op": "ready"}]


@pytest.mark.parametrize("garbage", [
    b'{"op": "a"},{"op": "b"}',  # two objects on one line
    b'{"op": "a", "x": [1',  # one object over two lines, with the next line's start
    b'{"op": 1}',  # op is not a string
    b'{"x": 1}',
])
def test_lines_read_at_once_keep_only_one_message_per_line(garbage):
    tail = b'2]}' if garbage.endswith(b"[1") else b'{"op": "c"}'
    messages = Lines().feed(encode({"op": "first"}) + garbage + b"\n" + tail + b"\n" + encode({"op": "last"}))
    expected = [{"op": "first"}, *([{"op": "c"}] if tail == b'{"op": "c"}' else []), {"op": "last"}]
    assert messages == expected


def test_a_message_is_one_json_line():
    line = encode({"op": "signal", "id": 3, "sig": 15})
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and json.loads(line) == {"op": "signal", "id": 3, "sig": 15}


# -- a worker process over pipes ----------------------------------------------------------------------
class Pipe:
    """A worker started directly (no srun), read and written like the manager does."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen(WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lines = Lines()
        self.pending: list[dict] = []

    def send(self, message: dict) -> None:
        self.popen.stdin.write(encode(message))
        self.popen.stdin.flush()

    def next(self, op: str) -> dict:
        end = time.monotonic() + DEADLINE
        while True:
            for k, message in enumerate(self.pending):
                if message["op"] == op:
                    return self.pending.pop(k)
            assert time.monotonic() < end, f"no {op!r} from the worker"
            select.select([self.popen.stdout], [], [], 1.0)
            self.pending += self.lines.feed(os.read(self.popen.stdout.fileno(), 1 << 16))


def start(pipe: Pipe, key: int, command: str, where: Path) -> None:
    pipe.send({"op": "start", "id": key, "argv": ["sh", "-c", command], "cwd": str(where), "env": {"K": str(key)},
               "stdout": str(where / f"{key}.out"), "stderr": str(where / f"{key}.err"), "tag": f"t/{key}"})


def running_pid(where: Path) -> int:
    """The pid an attempt wrote to ``where/pid`` (it runs then)."""
    return int(wait_for(lambda: (where / "pid").is_file() and (where / "pid").read_text().strip(), "a pid file"))


def test_worker_starts_reports_and_signals_attempts(tmp_path):
    pipe = Pipe()
    try:
        ready = pipe.next("ready")
        assert ready["pid"] == pipe.popen.pid
        start(pipe, 1, "echo out $K; echo err >&2; exit 3", tmp_path)
        start(pipe, 2, "echo $$ > pid; exec sleep 60", tmp_path)
        pid = running_pid(tmp_path)
        exits = {}
        pipe.send({"op": "signal", "id": 2, "sig": signal.SIGTERM})
        while len(exits) < 2:
            message = pipe.next("exit")
            exits[message["id"]] = message
        assert exits[2]["pid"] == pid
        assert exits[1]["code"] == 3 and exits[2]["code"] == -signal.SIGTERM
        assert (tmp_path / "1.out").read_text() == "out 1\n" and (tmp_path / "1.err").read_text() == "err\n"
    finally:
        pipe.popen.stdin.close()
        assert pipe.popen.wait(DEADLINE) == 0


def test_start_error_is_reported_as_an_exit_with_the_reason(tmp_path):
    pipe = Pipe()
    try:
        start(pipe, 5, "true", tmp_path / "missing")
        message = pipe.next("exit")
        assert message["id"] == 5 and "missing" in message["error"]
    finally:
        pipe.popen.stdin.close()
        pipe.popen.wait(DEADLINE)


def test_end_of_file_kills_what_the_worker_started(tmp_path):
    pipe = Pipe()
    start(pipe, 1, "echo $$ > pid; exec sleep 60", tmp_path)
    pid = running_pid(tmp_path)
    pipe.popen.stdin.close()
    assert pipe.popen.wait(DEADLINE) == 0
    wait_for(lambda: is_gone(pid), "the attempt to die with its worker")


def test_what_a_killed_worker_left_is_killed_by_its_launch_tags(tmp_path):
    pipe = Pipe()
    (tmp_path / "1").mkdir()
    (tmp_path / "2").mkdir()
    start(pipe, 1, "echo $$ > pid; exec sleep 60", tmp_path / "1")
    start(pipe, 2, "echo $$ > pid; exec sleep 60", tmp_path / "2")
    pids = [running_pid(tmp_path / "1"), running_pid(tmp_path / "2")]
    pipe.popen.kill()
    pipe.popen.wait(DEADLINE)
    assert subprocess.run([*WORKER, "--kill", "t/1", "t/2"], timeout=DEADLINE).returncode == 0
    wait_for(lambda: all(is_gone(pid) for pid in pids), "the attempts of the killed worker to die")


# -- routing and the pool -------------------------------------------------------------------------------
def test_routing_sends_one_task_steps_to_workers_and_wider_ones_to_the_wide_launcher():
    one = Pool((Node("a", (0, 1, 2, 3)),))
    narrow, wide = Step(["app"], cores_per_task=2), Step(["app"], tasks=2)
    here, there = one.allocate(1, 2, 0), one.allocate(2, 1, 0)
    assert on_worker(narrow, here) and not on_worker(wide, there)
    two = Pool((Node("a", (0,)), Node("b", (0,)))).allocate(2, 1, 0)
    assert len(two.shares) == 2 and not on_worker(wide, two)
    assert RoutedLauncher(LocalLauncher()).command(narrow, here, ["app"], False) == ["app"]
    gpu = Pool((Node("g", (0, 1), ("0", "1")),))
    assert not on_worker(Step(["app"], gpus_per_task=1), gpu.allocate(1, 1, 1)), "Slurm binds GPU steps"


def test_a_disabled_node_gets_nothing_and_keeps_nothing_released():
    pool = Pool((Node("a", (0, 1)), Node("b", (0, 1))))
    held = pool.allocate(1, 2, 0)
    pool.disable(held.shares[0].node)
    pool.release(held)
    other = pool.allocate(1, 2, 0)
    assert other.nodes != held.nodes and pool.allocate(1, 1, 0) is None
    assert not pool.can_ever_fit(3, 1, 0) and pool.can_ever_fit(2, 1, 0)


# -- the engine through local workers -------------------------------------------------------------------
def engine(ens) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HELPER.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(HELPER), str(ens.setup_dir)], env=env)


def test_engine_runs_narrow_steps_on_workers_and_wide_ones_directly(edir):
    ens = create([run(i, sh("echo $PPID > ppid")) for i in range(30)] + [run(99, sh("true", tasks=3))])
    assert engine(ens).wait(DEADLINE * 2) == 0
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    by_run = attempts_by_run(ens)
    assert all(len(a) == 1 for a in by_run.values())
    narrow = [a[0] for a in by_run.values() if len(a[0]["placement"]) == 1]
    assert len(narrow) == 30 and {a["placement"][0]["node"] for a in narrow} == {"a", "b"}
    assert all(a["command"] == ["sh", "-c", "echo $PPID > ppid"] for a in narrow)
    parents = {Path(r["run_dir"], "ppid").read_text() for r in ens.runs() if r["id"] != 31}
    assert len(parents) == 2


def test_a_dead_worker_gives_its_runs_back_and_its_node_away(edir):
    gate = edir / "go"
    ens = create([run(i, sh(f"echo $PPID > ppid.$ENSEMBLE_ATTEMPT; {wait_file(gate)}")) for i in range(8)])
    manager = engine(ens)
    try:
        running = wait_for(lambda: _ppid_files(ens) if len(_ppid_files(ens)) == 4 else None, "4 gated steps")
        victim_run, worker = next(iter(running.items()))
        dead = next(a for a in ens.attempts() if a["run_id"] == victim_run)["placement"][0]["node"]
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: sum(a["outcome"] == "interrupted" for a in ens.attempts()) == 2, "2 interrupted attempts")
    finally:
        gate.touch()
    assert manager.wait(DEADLINE * 2) == 0
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    for attempts in attempts_by_run(ens).values():
        assert [a["outcome"] for a in attempts] in (["success"], ["interrupted", "success"])
        assert attempts[-1]["placement"][0]["node"] != dead
        assert all(a["placement"][0]["node"] == dead for a in attempts[:-1])
    assert sum(len(a) == 2 for a in attempts_by_run(ens).values()) == 2
    assert all(r["restarts"] == 0 for r in ens.runs())


def _ppid_files(ens) -> dict[int, int]:
    """Run id -> parent pid of its first attempt's step, for the steps that started."""
    found = {}
    for row in ens.runs():
        path = Path(row["run_dir"], "ppid.1")
        if path.is_file() and path.read_text().strip():
            found[row["id"]] = int(path.read_text())
    return found


def test_timeouts_and_start_errors_through_workers(edir):
    ens = create([run(1, sh("exec sleep 60", timeout=0.005)), run(2, Step(["/nonexistent/app"], batch_script=False)),
                  run(3, sh("exit 4"))])
    assert engine(ens).wait(DEADLINE * 2) == EXIT_RUNS_FAILED
    assert set(statuses(ens).values()) == {RunStatus.FAILURE}
    (timed_out,), (not_started,), (failed,) = (attempts_by_run(ens)[k] for k in (1, 2, 3))
    assert timed_out["outcome"] == "timeout" and timed_out["signal"] == signal.SIGTERM
    assert not_started["outcome"] == "launch_error" and "nonexistent" in ens.runs([2])[0]["message"]
    assert failed["outcome"] == "failure" and failed["exit_code"] == 4


def test_a_malformed_start_request_is_answered_not_fatal(tmp_path):
    pipe = Pipe()
    try:
        pipe.send({"op": "start", "id": 9, "argv": ["true"]})
        refused = pipe.next("exit")
        assert refused["id"] == 9 and "cwd" in refused["error"]
        start(pipe, 10, "exit 0", tmp_path)
        done = pipe.next("exit")
        assert done["id"] == 10 and done["code"] == 0
    finally:
        pipe.popen.stdin.close()
        pipe.popen.wait(DEADLINE)

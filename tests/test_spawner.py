"""The spawner (ensemble/executors/spawner.c): its protocol driven directly, and the engine on it.

The binary is compiled from the package's source by :func:`spawner_binary` (a real C compiler,
real processes); every assertion reads what really happened: exit codes, files, /proc.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from engine_helpers import (
    SETUP,
    attempts_by_run,
    create,
    events,
    execute,
    long_sleep,
    pids_with,
    proc_state,
    run,
    sh,
    start_detached,
    statuses,
    token,
    wait_for,
    wait_manager_exit,
)
from spawner_helpers import Spawner, needs_spawner

from ensemble import Ensemble
from ensemble.executors import Launch
from ensemble.executors import spawner as spawner_module
from ensemble.executors.spawner import SpawnerExecutor, spawner_binary
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


def test_a_step_gets_its_directory_environment_and_log_files(spawner, tmp_path):
    started = spawner.start(1, ["sh", "-c", "pwd; echo \"$GREETING $HOME\"; echo oops >&2; exit 3"], tmp_path,
                            env={"GREETING": "hé", "HOME": "/nowhere"})
    assert started["op"] == "started" and started["id"] == 1
    end = spawner.recv()
    assert end["op"] == "exit" and end["code"] == 3 and end["pid"] == started["pid"]
    assert abs(end["end"] - time.time()) < 60
    assert (tmp_path / "1.out").read_text() == f"{tmp_path}\nhé /nowhere\n"
    assert (tmp_path / "1.err").read_text() == "oops\n"


def test_the_program_is_found_in_the_requests_path(spawner, tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "hello-tool").write_text("#!/bin/sh\necho found\n")
    (tools / "hello-tool").chmod(0o755)
    spawner.start(1, ["hello-tool"], tmp_path, env={"PATH": f"/nonexistent:{tools}"})
    assert spawner.recv()["code"] == 0
    assert (tmp_path / "1.out").read_text() == "found\n"


def test_a_program_that_cannot_start_is_an_error_naming_it(spawner, tmp_path):
    end = spawner.start(1, ["no-such-program-here"], tmp_path)
    assert end == {"op": "exit", "id": 1, "error": "[Errno 2] No such file or directory: 'no-such-program-here'"}
    end = spawner.start(2, ["/bin/true"], tmp_path / "missing-dir")
    assert end["op"] == "exit" and "No such file or directory" in end["error"]


def test_a_signal_reaches_the_whole_group_and_the_end_says_which(spawner, tmp_path):
    spawner.start(1, ["sh", "-c", "sleep 60 & wait"], tmp_path)
    spawner.send(op="signal", id=1, sig=signal.SIGTERM)
    end = spawner.recv()
    assert end["code"] == -signal.SIGTERM


def test_an_ended_step_stays_a_zombie_until_reaped(spawner, tmp_path):
    pid = spawner.start(1, ["/bin/true"], tmp_path)["pid"]
    assert spawner.recv()["code"] == 0
    time.sleep(0.2)
    assert proc_state(pid) == "Z", "the status must stay with the process until the end is recorded"
    spawner.send(op="reap", ids=[1])
    wait_for(lambda: proc_state(pid) is None, "the reaped step is gone")


def test_an_existing_log_is_appended_to(spawner, tmp_path):
    (tmp_path / "1.out").write_text("before\n")
    messages = [spawner.start(1, ["echo", "after"], tmp_path), spawner.recv(), spawner.recv()]
    assert [m["op"] for m in messages] == ["warn", "started", "exit"]
    assert "1.out exists already: appending to it" in messages[0]["message"]
    assert (tmp_path / "1.out").read_text() == "before\nafter\n"


def test_what_a_step_leaves_behind_is_killed_when_it_ends(spawner, tmp_path):
    tok = token()
    spawner.start(1, ["sh", "-c", f"setsid {long_sleep(tok)} & exit 0"], tmp_path,
                  env={"ENSEMBLE_LAUNCH": "t/1.1"})
    assert spawner.recv()["code"] == 0
    wait_for(lambda: not [p for p in pids_with(tok) if proc_state(p) != "Z"], "the leftover is killed")
    wait_for(lambda: not pids_with(tok), "the killed leftover is reaped")


def test_a_bad_line_is_reported_and_the_next_one_served(spawner, tmp_path):
    spawner.popen.stdin.write(b'not json\n{"op": "start", "id": 1}\n')
    spawner.popen.stdin.flush()
    assert spawner.recv()["op"] == "warn"
    assert "without id, argv" in spawner.recv()["error"]
    spawner.start(2, ["/bin/true"], tmp_path)
    assert spawner.recv()["code"] == 0


def test_end_of_file_leaves_running_steps_alone(spawner, tmp_path):
    # The manager died: its steps pass to the keeper, which records their exits.
    tok = token()
    pid = spawner.start(1, ["sh", "-c", long_sleep(tok)], tmp_path)["pid"]
    assert spawner.close() == 0
    assert proc_state(pid) not in (None, "Z")
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: proc_state(pid) in (None, "Z"), "the step is killed")


# -- the engine on the spawner -------------------------------------------------------------------
def _spawner_pid(ens: Ensemble) -> int | None:
    """The spawner's pid as the manager recorded it when its executor started (None: no spawner)."""
    started = [e["detail"] for e in events(ens, "executor_started")]
    return started[0].get("spawner") if started else None


def test_steps_run_through_the_spawner_and_without_it(edir, monkeypatch):
    for setting, uses_spawner in (("1", True), ("0", False)):
        monkeypatch.setenv("ENSEMBLE_SPAWNER", setting)
        setup = edir / f"{SETUP}-{setting}"
        ens = Ensemble.create(runs=[run(i, sh(f"echo {i} > out; exit {i % 2}")) for i in range(1, 7)],
                              setup_dir=str(setup))
        execute(ens, cores=2)
        assert statuses(ens) == {i: RunStatus.FAILURE if i % 2 else RunStatus.SUCCESS for i in range(1, 7)}
        for i, attempts in attempts_by_run(ens).items():
            assert [a["exit_code"] for a in attempts] == [i % 2]
            assert attempts[0]["pid"] is not None
        assert (_spawner_pid(ens) is not None) is uses_spawner


def test_a_spawner_that_dies_costs_its_runs_one_attempt_and_nothing_more(edir):
    tok = token()
    gate = edir / "gate"
    ens = create([run(i, sh(f"[ -e {gate} ] || exec {long_sleep(tok)}")) for i in (1, 2)] +
                 [run(i, sh("true")) for i in range(3, 7)])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: len(pids_with(tok)) == 2, "both sleeps run")
    spawner_pid = _spawner_of(pid)
    gate.touch()
    os.kill(spawner_pid, signal.SIGKILL)
    wait_manager_exit(ens, pid)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, 7)}
    by_run = attempts_by_run(ens)
    assert [a["outcome"] for a in by_run[1]] == ["interrupted", "success"]
    assert [a["outcome"] for a in by_run[2]] == ["interrupted", "success"]
    assert all(len(by_run[i]) == 1 for i in range(3, 7))
    assert not pids_with(tok)


def _spawner_of(manager_pid: int) -> int:
    def find() -> int | None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if Path(cmd[0].decode()).name.startswith("spawner-") and cmd[1:2] == [str(manager_pid).encode()]:
                return int(entry.name)
        return None
    return wait_for(find, "the manager's spawner")


def test_without_a_compiler_steps_start_from_the_manager(edir, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", "/bin/false")
    spawner_module.spawner_binary.cache_clear()
    try:
        assert spawner_binary() is None
        assert not any((tmp_path / "cache" / "ensemble").glob("spawner-*"))
    finally:
        spawner_module.spawner_binary.cache_clear()
    ens = create([run(i, sh("true")) for i in (1, 2)])
    execute(ens, cores=1)
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS}
    assert _spawner_pid(ens) is None


def test_the_executor_waits_for_an_end_and_never_signals_an_ended_attempt(tmp_path):
    executor = SpawnerExecutor()
    executor.set_base_env(dict(os.environ))
    try:
        launch = Launch(1, 0, 1, None, None, ["sh", "-c", "exit 4"], str(tmp_path), {"X": "1"},
                        str(tmp_path / "o"), str(tmp_path / "e"), "t/1.1")
        handle = executor.start(launch)
        executor.flush()
        assert executor.reap(handle) == 4, "reap waits for the end that has not come yet"
        assert executor.exited(handle)
        assert executor.signal(handle, signal.SIGTERM) is False
        pid = handle.pid
        assert proc_state(pid) == "Z", "kept until the end is committed"
        executor.committed()
        executor.flush()
        wait_for(lambda: proc_state(pid) is None, "the committed attempt is reaped")
    finally:
        executor.close()

"""The keeper: the process a manager's engine runs under, so no step's exit status is lost.

:func:`run_kept` forks.  The child runs the engine (it is "the manager": its pid is in the
lease and in ``manager.pid``); the parent, the keeper, becomes a child subreaper, passes
SIGTERM/SIGINT/SIGHUP on to the engine and waits for it (the engine gets SIGTERM if the
keeper dies: killing the process one started stops the manager).  The keeper costs nothing
per run.

When the engine dies without cleaning up (SIGKILL, a crash), its steps are reparented to the
keeper.  The keeper writes the exit status of each of them, before reaping it, as one JSON
line to ``<setup_dir>/exits/<host>-<engine pid>.jsonl`` (whose first line, written when the
engine took its lease, names the keeper), and returns once none is left.  The next manager
adopts the steps still running and takes the recorded exits as the ends of their attempts
(:mod:`ensemble.engine.adoption`), so work that finished while no manager ran is not repeated.
"""
from __future__ import annotations

import json
import logging
import os
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensemble import errors
from ensemble.executors.local import become_subreaper, die_with_parent, launch_tag, process_environ
from ensemble.executors.procs import children
from ensemble.prep.hooks import ENV_MANAGER
from ensemble.store.lease import HOST, process_start_time

EXITS_DIR = "exits"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: After the engine's death the keeper looks for its steps every EARLY_POLL_MS for
#: EARLY_PASSES passes, then every second; it says "settled" after SETTLED_AFTER_PASSES.
EARLY_POLL_MS, EARLY_PASSES, SETTLED_AFTER_PASSES = 25, 40, 3


def exits_path(setup_dir: Path, host: str, engine_pid: int) -> Path:
    """Where the keeper of the engine ``engine_pid`` on ``host`` records its orphans' exits."""
    return Path(setup_dir) / EXITS_DIR / f"{host}-{engine_pid}.jsonl"


def keeper_possible() -> bool:
    """Whether engines run under a keeper here (Linux; ``ENSEMBLE_KEEPER=0`` turns it off)."""
    return os.environ.get("ENSEMBLE_KEEPER", "1") != "0" and hasattr(os, "pidfd_open")


def run_kept(body: Callable[[Callable[[str], None]], int], setup_dir: Path, close_in_keeper: tuple[int, ...] = ()
             ) -> int:
    """Run ``body(ready)`` in a forked engine process under this one; return its exit status
    (128+N after death by signal N), re-raising the :class:`~ensemble.errors.EnsembleError`
    it raised.  ``body`` calls ``ready(manager_id)`` once it holds its lease."""
    read, write = os.pipe2(os.O_CLOEXEC)
    before, keeper = set(children(os.getpid())), os.getpid()
    # Signals wait until each side has its handlers: the engine its own, the keeper forwarders.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    pid = os.fork()
    if pid == 0:
        die_with_parent(signal.SIGTERM, keeper)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(read)
        _engine_child(body, write, setup_dir)
    os.close(write)
    for fd in close_in_keeper:
        os.close(fd)
    become_subreaper()
    saved = _forward_signals(pid)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    try:
        status = _wait_engine(pid)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    messages = _read_messages(read)
    manager = next((m["manager"] for m in messages if "manager" in m), None)
    if manager is not None:
        _collect_orphans(exits_path(setup_dir, HOST, pid), manager, before)
    for message in messages:
        if "error" in message:
            kind = getattr(errors, message["error"], errors.EnsembleError)
            raise kind(message["message"])
        if "crash" in message:
            raise errors.EnsembleError(f"the manager failed unexpectedly: {message['crash']}")
    return status


def _engine_child(body: Callable[[Callable[[str], None]], int], write: int, setup_dir: Path) -> None:
    """The forked engine: run, report, and leave without running the parent's exit handlers."""
    code = 1

    def send(message: dict[str, Any]) -> None:
        os.write(write, (json.dumps(message) + "\n").encode())

    def ready(manager: str) -> None:
        write_header(setup_dir, os.getpid(), os.getppid())
        send({"manager": manager})

    try:
        code = body(ready)
    except errors.EnsembleError as exc:
        send({"error": type(exc).__name__, "message": str(exc)})
        code = 2
    except BaseException as exc:  # noqa: BLE001 - reported to the keeper, which raises it
        send({"crash": "".join(traceback.format_exception_only(exc)).strip()})
        traceback.print_exc()
    finally:
        os._exit(code)


def _forward_signals(pid: int) -> dict[int, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    forward = lambda signum, frame: _kill(pid, signum)  # noqa: E731
    return {sig: signal.signal(sig, forward) for sig in FORWARDED}


def _wait_engine(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _read_messages(read: int) -> list[dict[str, Any]]:
    data = b""
    with os.fdopen(read, "rb") as pipe:
        os.set_blocking(read, False)
        data = pipe.read() or b""
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def write_header(setup_dir: Path, engine_pid: int, keeper_pid: int) -> None:
    """The exits file's first line: which process keeps the engine (written by the engine at ready)."""
    path = exits_path(setup_dir, HOST, engine_pid)
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"keeper": keeper_pid, "keeper_start": process_start_time(keeper_pid)}) + "\n")
    except OSError as exc:  # a full disk: the manager runs on; after a crash its steps run again
        logging.getLogger("ensemble.engine").warning("cannot write %s (%s): steps left running by a crash of "
                                                     "this manager will not be adopted", path, exc)


def _collect_orphans(path: Path, manager: str, before: set[int]) -> None:
    """Wait for the dead engine's steps that were reparented here, recording each exit; remove
    the exits file when the engine left none (it ended cleanly).  Children this process had
    before the engine started are never touched; a new child whose environment cannot be read
    any more (it has just ended) is recorded by pid.  For the first second a child that does
    not carry the manager's tag is looked at again (a step between fork and exec still shows
    the manager's own environment).  Once the steps that had already ended are recorded, a
    ``settled`` line tells a manager starting now that the records are there."""
    needle = f"{ENV_MANAGER}={manager}".encode() + b"\0"
    watched: dict[int, tuple[int, str | None]] = {}
    poller, recorded, passes = select.poll(), 0, 0
    while True:
        passes += 1
        unsure = False
        for pid in children(os.getpid()):
            if pid in watched or pid in before:
                continue
            env = process_environ(pid)
            ended = not env.strip(b"\0")
            if needle in env or (ended and process_start_time(pid) is None):
                try:
                    fd = os.pidfd_open(pid)
                except ProcessLookupError:
                    continue
                watched[pid] = (fd, launch_tag(env))
                poller.register(fd, select.POLLIN)
            elif passes < EARLY_PASSES:
                unsure = True
            else:
                before.add(pid)
        if not watched and not unsure:
            break
        ready = {fd for fd, _ in poller.poll(EARLY_POLL_MS if passes < EARLY_PASSES else 1000)}
        for pid, (fd, tag) in list(watched.items()):
            if fd in ready:
                recorded += _record_exit(path, pid, tag)
                poller.unregister(fd)
                os.close(fd)
                del watched[pid]
        if passes == SETTLED_AFTER_PASSES:
            _append(path, {"settled": time.time()})
    if not recorded and path.is_file():
        path.unlink()


def _record_exit(path: Path, pid: int, tag: str | None) -> int:
    """Append the exit of ``pid`` (still unreaped), then reap it; return 1 if it was recorded."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    record: dict[str, Any] = {"pid": pid, "start": process_start_time(pid, zombies=True), "tag": tag,
                              "end": time.time()}
    if info.si_code == os.CLD_EXITED:
        record["exit"] = info.si_status
    else:
        record["signal"] = info.si_status
    written = _append(path, record)
    os.waitpid(pid, 0)
    return int(written)


def _append(path: Path, record: dict[str, Any]) -> bool:
    """Append one JSON line; False on a full disk (the next manager then finds no record and
    runs the attempt again)."""
    try:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
    except OSError:
        return False
    return True


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass

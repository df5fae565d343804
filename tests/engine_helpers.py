"""Shared helpers for the execution-engine tests.

Everything here works with real processes: steps are ``sh``/``python``
commands, process checks read ``/proc``, and waiting is polling with a
generous deadline (never a wall-clock assertion).
"""
from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ensemble import CompositeRun, Ensemble, Step
from ensemble.executors.procs import kill_tagged
from ensemble.status import RunStatus
from ensemble.store.lease import HOST, process_start_time

SETUP = "setup"
#: Safety net passed as ``execute_local(timeout=...)`` so a broken engine cannot hang the suite.
GUARD_MINUTES = 0.75
#: Deadline for conditions that normally hold within a second or two.
DEADLINE = 30.0

T = TypeVar("T")
_TOKENS: list[str] = []


# -- steps and runs ------------------------------------------------------------------------------
def sh(command: str, **step: Any) -> Step:
    """A step running ``sh -c command`` (a program, not a batch script)."""
    return Step(["sh", "-c", command], batch_script=False, **step)


def py(code: str, **step: Any) -> Step:
    """A step running ``python -c code``."""
    return Step([sys.executable, "-c", code], batch_script=False, **step)


def run(x: Any, *steps: Step) -> CompositeRun:
    return CompositeRun({"x": x}, list(steps))


def token() -> str:
    """A unique number used as the fractional part of a long ``sleep`` to find its processes."""
    tok = f"{uuid.uuid4().int % 10 ** 6:06d}"
    _TOKENS.append(tok)
    return tok


def long_sleep(tok: str) -> str:
    """A sleep that outlives any test, recognisable in /proc by ``tok``."""
    return f"sleep 290.{tok}"


def wait_file(path: str | os.PathLike) -> str:
    """Shell loop that waits until ``path`` exists (a test-controlled gate)."""
    return f'while [ ! -e "{path}" ]; do sleep 0.05; done'


# -- ensembles -----------------------------------------------------------------------------------
def create(runs: Iterable[CompositeRun], **options: Any) -> Ensemble:
    return Ensemble.create(runs=list(runs), setup_dir=SETUP, **options)


def execute(ens: Ensemble, **options: Any) -> None:
    """Blocking execution with the guard timeout."""
    options.setdefault("timeout", GUARD_MINUTES)
    ens.execute_local(blocking=True, **options)


def start_detached(ens: Ensemble, **options: Any) -> int:
    """Start a detached manager (with the guard timeout); return its pid."""
    options.setdefault("timeout", GUARD_MINUTES)
    pid = ens.execute_local(blocking=False, **options)
    assert isinstance(pid, int)
    return pid


def statuses(ens: Ensemble) -> dict[int, RunStatus]:
    return {r["id"]: r["status"] for r in ens.runs()}


def run_row(ens: Ensemble, run_id: int) -> dict[str, Any]:
    return ens.runs([run_id])[0]


def attempts_by_run(ens: Ensemble) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for attempt in ens.attempts():
        out.setdefault(attempt["run_id"], []).append(attempt)
    return out


def open_attempts(ens: Ensemble) -> list[dict[str, Any]]:
    """Attempts started and not ended (a chained attempt waiting to start is not one of them)."""
    return [a for a in ens.attempts() if a["end"] is None and a["outcome"] != "chained"]


def events(ens: Ensemble, kind: str) -> list[dict[str, Any]]:
    return [e for e in ens.events() if e["kind"] == kind]


# -- waiting -------------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], T], what: str, deadline: float = DEADLINE) -> T:
    """Poll ``predicate`` until it returns something true; fail after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.0f} s waiting for: {what}")
        time.sleep(0.05)


def wait_manager_exit(ens: Ensemble, pid: int, deadline: float = DEADLINE) -> None:
    """Wait until the detached manager ``pid`` has exited and holds no lease."""
    wait_for(lambda: is_gone(pid) and not ens.store.leases(), f"manager {pid} to exit", deadline)


# -- processes -----------------------------------------------------------------------------------
def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` (``R``, ``S``, ``Z``, ...), None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def is_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie has exited too)."""
    return proc_state(pid) in (None, "Z")


def pids_with(tok: str) -> list[int]:
    """Live processes whose command line contains ``tok``."""
    needle = tok.encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmdline:
                if needle in cmdline.read() and not is_gone(int(entry.name)):
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time consumed so far by ``pid``."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- resource accounting -------------------------------------------------------------------------
def peak(intervals: Iterable[tuple[float, float, int]]) -> int:
    """Largest total weight of overlapping ``(start, end, weight)`` intervals (sweep line).

    An interval ending at the instant another starts does not overlap it.
    """
    points = []
    for start, end, weight in intervals:
        points.append((start, 1, weight))
        points.append((end, 0, -weight))
    current = best = 0
    for _, _, delta in sorted(points):
        current += delta
        best = max(best, current)
    return best


def overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]


def placed(attempt: dict[str, Any], what: str) -> list[int]:
    return [i for share in attempt["placement"] for i in share[what]]


# -- cleanup -------------------------------------------------------------------------------------
def _cleanup(root: Path) -> None:
    """Kill managers (and their tagged processes) this test started under ``root``."""
    for db in root.rglob("ensemble.db"):
        conn = sqlite3.connect(db, timeout=30)
        try:
            leases = conn.execute("SELECT manager, host, pid, pid_start FROM leases").fetchall()
        finally:
            conn.close()
        mine = [(m, pid) for m, host, pid, start in leases if host == HOST and process_start_time(pid) == start]
        for _, pid in mine:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        kill_tagged([m for m, _, _, _ in leases])
    while _TOKENS:
        for pid in pids_with(_TOKENS.pop()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def engine_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Body of each engine test file's ``edir`` fixture: a fresh working directory; managers and
    steps the test left behind are killed afterwards."""
    monkeypatch.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        _cleanup(tmp_path)

"""Steps a dead manager started on this host, taken over by the next one.

The new manager is not their parent, so it watches each through a pidfd and learns how it
ended from the record its keeper (:mod:`ensemble.engine.keeper`) writes before reaping it.
"""
from __future__ import annotations

import functools
import json
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble.executors.base import Handle
from ensemble.store.lease import process_start_time

#: How long to wait for the keeper's record of an adopted step that has ended.
RECORD_WAIT_SECONDS = 5.0
#: An untagged record belongs to an attempt if its process started this close after the attempt
#: was recorded (``btime`` has a resolution of one second, hence the slack before).
START_SLACK_SECONDS, START_WINDOW_SECONDS = 2.0, 30.0


@dataclass(eq=False)
class AdoptedHandle(Handle):
    """An attempt of a dead manager: still running (``pidfd``) or already ended (``record``)."""

    pid: int | None = None
    pidfd: int | None = None
    tag: str = ""
    run_id: int = 0
    attempt: int = 0
    #: When the attempt was recorded (matches an untagged record: see :func:`find_record`).
    started: float | None = None
    #: The keeper's exits file and its (pid, start time), for an attempt still running.
    exits: Path | None = None
    keeper: tuple[int, str] | None = None
    record: dict[str, Any] | None = None
    waited: bool = False

    def exited(self) -> bool:
        if self.pidfd is None:
            return True
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def code(self) -> int | None:
        """The exit code, or minus the signal; None when no keeper recorded the end."""
        record = self.await_record()
        if record is None:
            return None
        return -int(record["signal"]) if "signal" in record else int(record["exit"])

    def await_record(self) -> dict[str, Any] | None:
        """The keeper's record of this ended attempt (it is written just after the pidfd fires;
        read once more after the keeper is seen gone, in case it wrote the record first)."""
        if self.record is not None or self.waited or self.exits is None:
            return self.record
        self.waited = True
        deadline = time.monotonic() + RECORD_WAIT_SECONDS
        while True:
            alive = self._keeper_alive()
            self.record = find_record(read_exits(self.exits)[1], self.run_id, self.attempt, self.pid, self.started)
            if self.record is not None or not alive or time.monotonic() > deadline:
                return self.record
            time.sleep(0.005)

    def _keeper_alive(self) -> bool:
        return self.keeper is not None and process_start_time(self.keeper[0]) == self.keeper[1]


def read_exits(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """A keeper's exits file: its header and its complete records."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None, []
    lines = [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]
    if not lines or "keeper" not in lines[0]:
        return None, [line for line in lines if "pid" in line]
    return lines[0], [line for line in lines[1:] if "pid" in line]


def settled(path: Path) -> bool:
    """Whether a keeper has recorded every step that had ended when its manager died."""
    try:
        return '"settled"' in path.read_text(encoding="utf-8")
    except OSError:
        return True


def attempt_tag(manager: str, run_id: int, attempt: int) -> str:
    """The launch tag ``<manager>/<run>.<attempt>`` every process of an attempt carries."""
    return f"{manager}/{run_id}.{attempt}"


def launch_key(tag: str | None) -> tuple[int, int] | None:
    """``(run id, attempt)`` from a launch tag ``<manager>/<run>.<attempt>``."""
    if not tag or "/" not in tag:
        return None
    run, _, attempt = tag.rsplit("/", 1)[1].partition(".")
    return (int(run), int(attempt)) if run.isdigit() and attempt.isdigit() else None


def find_record(records: list[dict[str, Any]], run_id: int, attempt: int, pid: int | None = None,
                started: float | None = None) -> dict[str, Any] | None:
    """The record of the attempt's main process: the oldest with its launch tag, else (a step
    that had just ended when its manager died, so the keeper could not read its tag) the
    untagged record of its pid whose process started within seconds of the attempt's
    ``started`` time (a pid is not reused that fast)."""
    mine = [r for r in records if launch_key(r.get("tag")) == (run_id, attempt)]
    if mine:
        for record in mine:
            if pid is not None and record.get("pid") == pid:
                return record
        return min(mine, key=lambda r: int(r.get("start") or 0))
    if pid is None or started is None:
        return None
    for record in records:
        if record.get("tag") is None and record.get("pid") == pid and started_near(record.get("start"), started):
            return record
    return None


def started_near(ticks: str | None, started: float) -> bool:
    """Whether a process start time (clock ticks since boot) lies within seconds after ``started``."""
    if ticks is None or not str(ticks).isdigit():
        return False
    wall = boot_time() + int(ticks) / os.sysconf("SC_CLK_TCK")
    return started - START_SLACK_SECONDS <= wall <= started + START_WINDOW_SECONDS


@functools.cache
def boot_time() -> float:
    """When this machine booted (``btime`` of /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def signal_group(handle: AdoptedHandle, sig: int) -> None:
    """Send ``sig`` to the adopted attempt's process group (its pid leads it)."""
    if handle.pid is None:
        return
    for kill in (os.killpg, os.kill):
        try:
            kill(handle.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def finish(handle: AdoptedHandle) -> int:
    """Collect an ended adopted attempt: kill what is left of its group, close its pidfd, and
    return its code (SIGKILL's when its end was never recorded: see ``lost``)."""
    code = handle.code()
    signal_group(handle, signal.SIGKILL)
    if handle.pidfd is not None:
        os.close(handle.pidfd)
        handle.pidfd = None
    return -signal.SIGKILL if code is None else code

"""Processes tagged with a manager id: found (even those that left their group) and killed."""
from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Sequence

from ensemble.prep.hooks import ENV_MANAGER


def tagged_processes(manager_ids: Iterable[str], spare: Iterable[bytes] = ()) -> list[int]:
    """Pids of this user's processes whose environment names one of the managers (and none of
    the ``spare`` environment entries)."""
    needles = [f"{ENV_MANAGER}={m}".encode() + b"\0" for m in manager_ids]
    spared = list(spare)
    if not needles:
        return []
    me = os.getpid()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as env:
                data = env.read() + b"\0"
        except OSError:
            continue
        if any(needle in data for needle in needles) and not any(s in data for s in spared):
            found.append(int(entry.name))
    return found


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``, whichever of its threads forked them (orphans handed to a
    subreaper go to its main thread)."""
    found = []
    try:
        tasks = list(os.scandir(f"/proc/{pid}/task"))
    except OSError:
        return []
    for task in tasks:
        try:
            with open(f"{task.path}/children", encoding="ascii") as listed:
                found.extend(int(kid) for kid in listed.read().split())
        except OSError:
            continue
    return found


def kill_tagged(manager_ids: Iterable[str], spare: Iterable[bytes] = ()) -> int:
    """SIGKILL every process (and its group) tagged with one of the managers, except those
    carrying one of the ``spare`` environment entries; return how many."""
    pids = tagged_processes(list(manager_ids), spare)
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return len(pids)


def end_children(popens: Sequence[subprocess.Popen], timeout: float) -> None:
    """Close each child's stdin (its cue to exit), then wait for each; one still there after
    ``timeout`` seconds is killed with its process group."""
    for popen in popens:
        try:
            popen.stdin.close()
        except (OSError, AttributeError):
            pass
    for popen in popens:
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            popen.wait()

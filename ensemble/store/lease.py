"""Manager leases: which manager processes are executing an ensemble.

A lease names host, pid and the pid's start time (so a reused pid is not taken
for a live manager).  On the lease's own host liveness is checked directly;
from another host by the heartbeat the manager refreshes.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

from ensemble.errors import EnsembleBusy
from ensemble.store import Store

HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 6 * HEARTBEAT_SECONDS
#: This host's name in leases and attempts; ``ENSEMBLE_HOSTNAME`` overrides it (containers whose
#: host names repeat across nodes, tests of the cross-host path).
HOST = os.environ.get("ENSEMBLE_HOSTNAME") or socket.gethostname()


def proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (``[0]`` is the state letter, ``[1]``
    the parent, ``[3]`` the session, ``[19]`` the start time in clock ticks); None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            return stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_start_time(pid: int, zombies: bool = False) -> str | None:
    """Kernel start time of a process (field 22 of /proc/PID/stat), None if gone or (unless
    ``zombies``) a zombie."""
    fields = proc_stat(pid)
    if fields is None or (fields[0] in ("Z", "X") and not zombies):
        return None
    return fields[19]


def is_alive(lease: dict) -> bool:
    """Whether the manager holding ``lease`` still runs."""
    if lease["host"] == HOST:
        return process_start_time(lease["pid"]) == lease["pid_start"]
    return time.time() - lease["heartbeat"] < STALE_AFTER_SECONDS


def live_leases(store: Store) -> list[dict]:
    return [lease for lease in store.leases() if is_alive(lease)]


@dataclass(frozen=True)
class Lease:
    """The lease this process holds."""

    manager: str
    host: str
    pid: int


def acquire(store: Store, allow_multiple: bool) -> tuple[Lease, list[dict]]:
    """Take a lease inside the caller's transaction; return it and the dead leases found.

    Raises EnsembleBusy if a live manager runs and either side does not allow multiple.
    """
    dead, live = [], []
    for lease in store.leases():
        (live if is_alive(lease) else dead).append(lease)
    blocking = [lease for lease in live if not (allow_multiple and lease["allow_multiple"])]
    if blocking:
        other = blocking[0]
        raise EnsembleBusy(
            f"ensemble is already executing: manager pid {other['pid']} on {other['host']} since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(other['started']))} "
            "(start both with allow_multiple=True, or --allow-multiple, to share the work)")
    pid = os.getpid()
    lease = Lease(manager=f"{HOST}:{pid}:{uuid.uuid4().hex[:8]}", host=HOST, pid=pid)
    now = time.time()
    for old in dead:
        store.drop_lease(old["manager"])
    store.add_lease(dict(manager=lease.manager, host=HOST, pid=pid, pid_start=process_start_time(pid) or "",
                         started=now, heartbeat=now, allow_multiple=int(allow_multiple)))
    return lease, dead

"""Process-group handling: start steps in their own group, kill whole groups,
and find processes tagged with a manager id (even ones that left their group)."""
from __future__ import annotations

import errno
import functools
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ensemble.hooks import ENV_MANAGER


@dataclass
class Child:
    """A started step: its Popen handle and a pidfd that becomes readable at exit."""

    popen: subprocess.Popen
    pidfd: int

    @property
    def pid(self) -> int:
        return self.popen.pid


#: Pauses between attempts to start a script that is "text file busy".
ETXTBSY_DELAYS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
_DEVNULL: int | None = None


def _devnull() -> int:
    global _DEVNULL
    if _DEVNULL is None:
        _DEVNULL = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    return _DEVNULL


def spawn(argv: Sequence[str], cwd: str, env: Mapping[str, str], stdout_path: str, stderr_path: str) -> Child:
    """Start ``argv`` as the leader of a new session and process group.

    ``close_fds=False`` is safe and twice as fast: every descriptor Python and
    SQLite open is close-on-exec, so children inherit only stdin/stdout/stderr.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
    out = os.open(stdout_path, flags, 0o644)
    try:
        err = os.open(stderr_path, flags, 0o644)
        try:
            popen = _popen_retrying_busy(argv, cwd, env, out, err)
        finally:
            os.close(err)
    finally:
        os.close(out)
    return Child(popen, os.pidfd_open(popen.pid))


def _popen_retrying_busy(argv: Sequence[str], cwd: str, env: Mapping[str, str], out: int,
                         err: int) -> subprocess.Popen:
    """Popen, retrying ETXTBSY: a script just written may still be open for writing in a child
    that another thread of this process (a user's, when execute_local blocks) forked and that has
    not reached exec yet (the descriptor closes on exec)."""
    start = functools.partial(subprocess.Popen, argv, cwd=cwd, env=env, stdin=_devnull(), stdout=out, stderr=err,
                              start_new_session=True, close_fds=False)
    for delay in ETXTBSY_DELAYS:
        try:
            return start()
        except OSError as exc:
            if exc.errno != errno.ETXTBSY:
                raise
        time.sleep(delay)
    return start()


def signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to a process group; a group that is gone is fine."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(child: Child) -> int:
    """Kill what is left of the child's group, reap the leader, return its Popen returncode."""
    signal_group(child.pid, signal.SIGKILL)
    code = child.popen.wait()
    os.close(child.pidfd)
    return code


def tagged_processes(manager_ids: Iterable[str]) -> list[int]:
    """Pids of this user's processes whose environment names one of the managers."""
    needles = [f"{ENV_MANAGER}={m}".encode() + b"\0" for m in manager_ids]
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
        if any(needle in data for needle in needles):
            found.append(int(entry.name))
    return found


def kill_tagged(manager_ids: Iterable[str]) -> int:
    """SIGKILL every process (and its group) tagged with one of the managers; return how many."""
    pids = tagged_processes(list(manager_ids))
    for pid in pids:
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    return len(pids)


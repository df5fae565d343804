"""Steps as processes of this host: fork+exec, one pidfd per step, whole-group signals.

The manager becomes a child subreaper, so a process a step started that escaped its
group with ``setsid`` is reparented to the manager when its parent exits; when the step
ends, children still carrying the step's launch tag are killed (and reaped).
"""
from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ensemble.executors import adopted
from ensemble.executors.adopted import AdoptedHandle
from ensemble.executors.base import Executor, Handle, Launch
from ensemble.executors.procs import children
from ensemble.store.lease import proc_stat

#: Environment variable naming the attempt a process belongs to (inherited by all it starts).
ENV_LAUNCH = "ENSEMBLE_LAUNCH"
#: Pauses between attempts to start a script that is "text file busy".
ETXTBSY_DELAYS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
log = logging.getLogger("ensemble.executors")


@dataclass(eq=False)
class LocalHandle(Handle):
    popen: subprocess.Popen
    pidfd: int
    tag: str

    @property
    def pid(self) -> int:  # type: ignore[override]
        return self.popen.pid


def close_inherited_fds() -> int:
    """Mark every descriptor above 2 close-on-exec (a PMI fd or a harness pipe must not reach
    steps, and spawning with ``close_fds=False`` stays fast); return how many were changed."""
    changed = 0
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                if os.get_inheritable(fd):
                    os.set_inheritable(fd, False)
                    changed += 1
            except OSError:
                continue
    return changed


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``); False where unsupported."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(sig: int, parent: int | None = None) -> None:
    """Ask the kernel for ``sig`` when the parent dies; if it died already (its pid is not
    ``parent`` any more), take ``sig`` now.  Safe between fork and exec."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if parent is not None and os.getppid() != parent:
        os.kill(os.getpid(), sig)


def kill_launched(tags: set[str]) -> int:
    """SIGKILL the processes (and their groups) whose launch tag is one of ``tags``; return how many."""
    needles = [f"{ENV_LAUNCH}={tag}".encode() + b"\0" for tag in tags]
    killed = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and any(n in process_environ(int(entry.name)) for n in needles):
            _killpg(int(entry.name), signal.SIGKILL)
            _kill(int(entry.name), signal.SIGKILL)
            killed += 1
    return killed


def open_log(path: str) -> int:
    """Open a new log file; an existing one (made ahead by a manager that died before using it,
    or from a database of an older version) is appended to, never truncated."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        if os.fstat(fd).st_size:
            log.warning("%s exists already: appending to it", path)
        return fd


@dataclass
class LocalExecutor(Executor):
    """Runs each attempt as a new session on this host."""

    name = "local"
    can_adopt = True
    subreaper: bool = False
    live: dict[int, LocalHandle] = field(default_factory=dict)
    unreaped: list[LocalHandle] = field(default_factory=list)
    doomed: set[int] = field(default_factory=set)
    #: Called in each attempt's child between fork and exec (the node-local worker asks for
    #: SIGKILL at its own death there); None keeps the fast spawn path.
    child_setup: Callable[[], None] | None = None

    def __post_init__(self) -> None:
        self.encoded: dict[bytes, bytes] = {}
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.closed_fds = close_inherited_fds()
        self.subreaper = become_subreaper()

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """Encode the base environment once: spawning then encodes only each attempt's own variables."""
        super().set_base_env(env)
        self.encoded = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}

    def describe(self) -> dict[str, object]:
        return {"executor": self.name, "subreaper": self.subreaper, "fds_made_cloexec": self.closed_fds}

    def start(self, launch: Launch) -> LocalHandle:
        env = self.encoded.copy()
        env.update((os.fsencode(k), os.fsencode(v)) for k, v in launch.env.items())
        env[ENV_LAUNCH.encode()] = launch.tag.encode()
        out, err = launch.logs if launch.logs is not None else (open_log(launch.stdout), None)
        try:
            if err is None:
                err = os.dup(out) if launch.stderr == launch.stdout else open_log(launch.stderr)
            try:
                popen = self._popen(launch.argv, launch.cwd, env, out, err)
            finally:
                os.close(err)
        finally:
            os.close(out)
        handle = LocalHandle(popen, os.pidfd_open(popen.pid), launch.tag)
        self.live[popen.pid] = handle
        return handle

    def _popen(self, argv: Sequence[str], cwd: str, env: Mapping[bytes, bytes], out: int,
               err: int) -> subprocess.Popen:
        """Popen, retrying ETXTBSY: a script just written may still be open for writing in a child
        that another thread forked and that has not reached exec yet."""
        start = functools.partial(subprocess.Popen, argv, cwd=cwd, env=env, stdin=self.devnull, stdout=out,
                                  stderr=err, start_new_session=True, close_fds=False,
                                  preexec_fn=self.child_setup)
        for delay in ETXTBSY_DELAYS:
            try:
                return start()
            except OSError as exc:
                if exc.errno != errno.ETXTBSY:
                    raise
            time.sleep(delay)
        return start()

    def adopt(self, handle: AdoptedHandle) -> AdoptedHandle:
        """Take over an attempt a dead manager started on this host (see :mod:`.adopted`)."""
        return handle

    def fileno(self, handle: Handle) -> int | None:
        return handle.pidfd

    def exited(self, handle: Handle) -> bool:
        if isinstance(handle, AdoptedHandle):
            return handle.exited()
        try:
            return os.waitid(os.P_PIDFD, handle.pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def signal(self, handle: Handle, sig: int) -> bool:
        if self.exited(handle):
            return False
        _killpg(handle.pid, sig)
        return True

    def lost(self, handle: Handle) -> bool:
        return isinstance(handle, AdoptedHandle) and handle.code() is None

    def ended_at(self, handle: Handle) -> float | None:
        record = handle.record if isinstance(handle, AdoptedHandle) else None
        return None if record is None else float(record["end"])

    def reap(self, handle: Handle) -> int:
        """The attempt's status, read without reaping it: the zombie stays until :meth:`committed`,
        so if this manager dies before its end is recorded, the keeper gets the status instead."""
        if isinstance(handle, AdoptedHandle):
            return adopted.finish(handle)
        _killpg(handle.pid, signal.SIGKILL)
        try:
            info = os.waitid(os.P_PIDFD, handle.pidfd, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            info = None
        self.unreaped.append(handle)
        if info is None:
            return handle.popen.wait()
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def committed(self) -> None:
        """Reap the attempts whose ends are now recorded."""
        for handle in self.unreaped:
            handle.popen.wait()
            os.close(handle.pidfd)
            self.live.pop(handle.pid, None)
        self.unreaped.clear()

    def sweep(self, handle: Handle) -> int:
        if isinstance(handle, AdoptedHandle):
            return kill_launched({handle.tag})
        if not self.subreaper:
            return 0
        needle = f"{ENV_LAUNCH}={handle.tag}".encode() + b"\0"
        killed = 0
        for pid in children(os.getpid()):
            if pid in self.live:
                continue
            if pid in self.doomed:
                _reap_if_dead(pid, self.doomed)
                continue
            if needle in process_environ(pid):
                _killpg(pid, signal.SIGKILL)
                _kill(pid, signal.SIGKILL)
                self.doomed.add(pid)
                killed += 1
            elif _is_orphan_zombie(pid):
                _reap_if_dead(pid, self.doomed)
        for pid in list(self.doomed):
            _reap_if_dead(pid, self.doomed)
        return killed

    def close(self) -> None:
        self.committed()
        os.close(self.devnull)
        for pid in list(self.doomed):
            _reap_if_dead(pid, self.doomed)


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def process_environ(pid: int) -> bytes:
    """A process's environment as in /proc (NUL-terminated entries; empty once it has ended)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as env:
            return env.read() + b"\0"
    except OSError:
        return b""


def launch_tag(env: bytes) -> str | None:
    """The ``ENSEMBLE_LAUNCH`` tag in an environment read by :func:`process_environ`."""
    prefix = f"{ENV_LAUNCH}=".encode()
    for item in env.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix):].decode(errors="replace")
    return None


def _is_orphan_zombie(pid: int) -> bool:
    """A dead process adopted from a step: it leads no group (steps and hook workers lead theirs)
    and lives in another session than this process (a caller's own children share ours)."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] == "Z" and int(fields[2]) != pid and int(fields[3]) != os.getsid(0)


def _reap_if_dead(pid: int, doomed: set[int]) -> None:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        done = pid
    if done:
        doomed.discard(pid)

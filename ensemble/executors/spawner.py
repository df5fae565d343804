"""Local steps started by the spawner: a small compiled process beside the manager (``spawner.c``).

Starting a process from Python (``subprocess.Popen``, a pidfd, a selector entry, a sweep of
``/proc``) costs the manager about twice what the step's own fork and exec cost it in C; with
short steps the manager, not the machine, was the limit.  The spawner takes that work: the manager
writes one JSON line per start (:mod:`ensemble.executors.wire`, plus ``started`` and ``reap``)
and reads the ends of all its steps from one pipe, a channel (:meth:`Executor.channels`).

It also takes **chained starts** (:meth:`SpawnerExecutor.chain`): an attempt the engine has
already recorded, to start the moment another one exits 0 on the placement it hands over, so a
core never waits for the manager between two short steps.  On any other end of the predecessor
the chained start is cancelled and never runs (:meth:`take_cancelled`).

What the local executor promises holds: each attempt in a new session with the manager's
environment and its own variables, log files opened without truncating, signals to its group,
leftovers killed by launch tag, and an ended attempt kept as a zombie until its end is committed
(``reap`` after each flush), so the keeper still gets the status of a step whose manager died
(the spawner exits at end of file or at its parent's death without touching its children).

The spawner is compiled on first use with the C compiler (``cc``) into the user's cache
(``$XDG_CACHE_HOME/ensemble`` or ``~/.cache/ensemble``), once per source and machine type.
Without a compiler, with ``ENSEMBLE_SPAWNER=0``, or if the spawner dies, steps start from the
manager itself (:class:`~ensemble.executors.local.LocalExecutor`), which this class extends.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import select
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ensemble.executors.base import Ending, Handle, Launch
from ensemble.executors.local import ENV_LAUNCH, LocalExecutor, process_environ
from ensemble.executors.procs import children
from ensemble.executors.wire import READ_SIZE, Lines, encode
from ensemble.prep.hooks import ENV_MANAGER

SOURCE = Path(__file__).with_name("spawner.c")
#: ``0`` turns the spawner off (steps start from the manager itself).
ENV_SPAWNER = "ENSEMBLE_SPAWNER"
#: Seconds the spawner may take to say "ready".
READY_TIMEOUT = 10.0
log = logging.getLogger("ensemble.executors")


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ensemble"


@functools.cache
def spawner_binary() -> Path | None:
    """The spawner compiled from this version's source for this machine type (built once, at
    first use; concurrent builders each rename a finished binary into place), or None."""
    source = SOURCE.read_bytes()
    digest = hashlib.sha256(source + platform.machine().encode()).hexdigest()[:16]
    binary = cache_dir() / f"spawner-{platform.machine()}-{digest}"
    if os.access(binary, os.X_OK):
        return binary
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.info("no C compiler (cc): steps start from the manager itself")
        return None
    try:
        binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=binary.parent) as scratch:
            built = Path(scratch, "spawner")
            done = subprocess.run([compiler, "-O2", "-o", str(built), str(SOURCE)], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                log.warning("the spawner did not compile (%s): steps start from the manager itself\n%s", compiler,
                            done.stderr.strip()[-2000:])
                return None
            os.replace(built, binary)
    except OSError as exc:
        log.warning("cannot build the spawner in %s (%s): steps start from the manager itself", binary.parent, exc)
        return None
    return binary


def spawner_wanted() -> bool:
    return os.environ.get(ENV_SPAWNER, "1") != "0"


@dataclass(eq=False)
class SpawnHandle(Handle):
    """An attempt the spawner runs (its pid comes with the spawner's ``started`` line)."""

    key: int
    tag: str
    code: int | None = None
    error: str | None = None
    end: float | None = None
    lost: bool = False
    reaped: bool = False
    #: A chained start that never started (its predecessor did not exit 0, or it was cancelled).
    cancelled: bool = False

    @property
    def ended(self) -> bool:
        return self.code is not None or self.error is not None or self.lost or self.cancelled


class SpawnerExecutor(LocalExecutor):
    """Starts attempts through the spawner; everything else as :class:`LocalExecutor`."""

    name = "spawner"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.popen: subprocess.Popen | None = None
        self.fd: int | None = None
        self.lines = Lines()
        self.handles: dict[int, SpawnHandle] = {}
        self.outbox = bytearray()
        #: Ended attempts whose zombies the spawner keeps until their ends are committed.
        self.held: list[SpawnHandle] = []
        self.ended_early: list[Handle] = []
        self.new_pids: list[tuple[Handle, int]] = []
        self.cancelled: list[Handle] = []
        self.tag_env: dict[str, str] = {}
        self.next_key = 0

    # -- the spawner process -------------------------------------------------------------------
    def set_base_env(self, env) -> None:
        """Start the spawner with ``env``, the base environment of every attempt, except the
        manager's tag: each request carries that, so the spawner itself is not one of the
        manager's processes (those are killed when the manager ends or dies)."""
        super().set_base_env(env)
        binary = spawner_binary() if spawner_wanted() else None
        if binary is None:
            return
        own = {k: v for k, v in env.items() if k != ENV_MANAGER}
        self.tag_env = {ENV_MANAGER: env[ENV_MANAGER]} if ENV_MANAGER in env else {}
        try:
            self.popen = subprocess.Popen([str(binary), str(os.getpid())], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env=own, start_new_session=True, bufsize=0)
        except OSError as exc:
            log.warning("cannot start the spawner %s (%s): steps start from the manager itself", binary, exc)
            return
        self.fd = self.popen.stdout.fileno()
        os.set_blocking(self.popen.stdin.fileno(), False)
        if not self._wait_ready():
            log.warning("the spawner did not start: steps start from the manager itself")
            self._end_spawner()

    def _wait_ready(self) -> bool:
        ready, _, _ = select.select([self.fd], [], [], READY_TIMEOUT)
        data = os.read(self.fd, READ_SIZE) if ready else b""
        messages = self.lines.feed(data)
        os.set_blocking(self.fd, False)
        return any(m["op"] == "ready" for m in messages)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "spawner": self.popen.pid if self.popen is not None else None}

    # -- starting ------------------------------------------------------------------------------
    def start(self, launch: Launch) -> Handle:
        if self.popen is None:
            return super().start(launch)
        return self._request(launch, {})

    @property
    def can_chain(self) -> bool:
        return self.popen is not None

    def chain(self, launch: Launch, after: Handle, unchanged: tuple[str, int] | None = None) -> Handle:
        """Start ``launch`` when ``after`` exits 0 (and ``unchanged``'s directory still has that
        modification time in ns); its pid comes with :meth:`take_pids`, or it comes back from
        :meth:`take_cancelled` having never started."""
        condition = {} if unchanged is None else {"inbox": unchanged[0], "seen": str(unchanged[1])}
        return self._request(launch, {"after": after.key, **condition})

    def cancel(self, handle: Handle) -> None:
        """Cancel a chained start that has not started yet (one that has runs on)."""
        if isinstance(handle, SpawnHandle) and self.popen is not None:
            self.outbox += encode({"op": "cancel", "id": handle.key})

    def _request(self, launch: Launch, extra: dict) -> SpawnHandle:
        if launch.logs is not None:
            for fd in launch.logs:
                os.close(fd)
        self.next_key += 1
        handle = SpawnHandle(self.next_key, launch.tag)
        self.handles[handle.key] = handle
        self.outbox += encode({"op": "start", "id": handle.key, **extra, "argv": launch.argv, "cwd": launch.cwd,
                               "env": {**self.tag_env, **launch.env, ENV_LAUNCH: launch.tag}, "stdout": launch.stdout,
                               "stderr": launch.stderr, "tag": launch.tag})
        return handle

    def flush(self) -> None:
        """Write what is queued, reading the spawner's answers meanwhile (neither side can block the other)."""
        if self.popen is None or not self.outbox:
            return
        data, self.outbox = bytes(self.outbox), bytearray()
        stdin = self.popen.stdin.fileno()
        while data:
            try:
                data = data[os.write(stdin, data):]
            except BlockingIOError:
                readable, _, _ = select.select([self.fd], [stdin], [])
                if readable:
                    self.ended_early += self._read()
                    if self.popen is None:
                        return
            except OSError:
                return  # the spawner is gone: its end of file follows on the channel

    def committed(self) -> None:
        """Tell the spawner to collect the attempts whose ends are now recorded."""
        if self.held:
            self.outbox += encode({"op": "reap", "ids": [h.key for h in self.held]})
            self.held = []
        super().committed()

    # -- ends --------------------------------------------------------------------------------------
    def channels(self) -> list[int]:
        return [self.fd] if self.fd is not None else []

    def on_readable(self, fd: int) -> list[Handle]:
        ended, self.ended_early = self.ended_early + self._read(), []
        return ended

    def take_pids(self) -> list[tuple[Handle, int]]:
        pids, self.new_pids = self.new_pids, []
        return pids

    def take_cancelled(self) -> list[Handle]:
        cancelled, self.cancelled = self.cancelled, []
        return cancelled

    def never_started(self, handle: Handle) -> bool:
        return isinstance(handle, SpawnHandle) and handle.cancelled

    def _read(self) -> list[Handle]:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return []
        if not data:
            return self._lose()
        ended: list[Handle] = []
        for message in self.lines.feed(data):
            op, handle = message["op"], self.handles.get(message.get("id"))
            if op == "warn":
                log.warning("%s", message.get("message"))
            elif handle is None:
                continue
            elif op == "started":
                handle.pid, handle.start = message.get("pid"), message.get("start")
                self.new_pids.append((handle, handle.pid))
            elif op == "cancelled":
                handle.cancelled = True
                del self.handles[handle.key]
                self.cancelled.append(handle)
            elif op == "exit":
                handle.code, handle.error, handle.end = message.get("code"), message.get("error"), message.get("end")
                handle.pid = message.get("pid", handle.pid)
                ended.append(handle)
                if handle.error is not None:
                    del self.handles[handle.key]
        return ended

    def _lose(self) -> list[Handle]:
        """The spawner died: kill what it ran, collect it, and start steps from here from now on."""
        self.popen.wait()
        log.error("the spawner ended (exit %s): its %d attempts are lost; steps start from the manager itself "
                  "from now on", self.popen.returncode, sum(not h.ended for h in self.handles.values()))
        _kill_and_collect([*self.handles.values(), *self.held])
        self.held = []
        # A chained start may have started unseen: it is lost too (interrupted, run again).
        ended = [h for h in self.handles.values() if not h.ended]
        for handle in ended:
            handle.lost = True
        self.handles.clear()
        self._end_spawner()
        return ended

    def _end_spawner(self) -> None:
        if self.popen is None:
            return
        self.popen.stdin.close()
        self.popen.wait()
        self.popen.stdout.close()
        self.popen, self.fd = None, None

    # -- the executor interface for the spawner's attempts ---------------------------------------
    def fileno(self, handle: Handle) -> int | None:
        return None if isinstance(handle, SpawnHandle) else super().fileno(handle)

    def exited(self, handle: Handle) -> bool:
        if not isinstance(handle, SpawnHandle):
            return super().exited(handle)
        if handle.ended:
            return True
        if handle.pid is None:
            return False
        try:
            pidfd = os.pidfd_open(handle.pid)
        except ProcessLookupError:
            return True
        try:
            return bool(select.select([pidfd], [], [], 0)[0])
        finally:
            os.close(pidfd)

    def signal(self, handle: Handle, sig: int) -> bool:
        if not isinstance(handle, SpawnHandle):
            return super().signal(handle, sig)
        if self.exited(handle) or self.popen is None:
            return False
        self.outbox += encode({"op": "signal", "id": handle.key, "sig": int(sig)})
        self.flush()
        return True

    def reap(self, handle: Handle) -> int:
        """The attempt's status (waiting for its end if it has not come yet); the spawner keeps its
        zombie until :meth:`committed`."""
        if not isinstance(handle, SpawnHandle):
            return super().reap(handle)
        while not handle.ended and self.popen is not None:
            self.flush()
            select.select([self.fd], [], [])
            self.ended_early += self._read()
        if handle.code is not None and not handle.reaped:
            handle.reaped = True
            self.held.append(handle)
            self.handles.pop(handle.key, None)
        return handle.code if handle.code is not None else -signal.SIGKILL

    def collect(self, handle: Handle) -> Ending:
        """The spawner's attempts carry their end with them (and the spawner sweeps after each)."""
        if not isinstance(handle, SpawnHandle):
            return super().collect(handle)
        return Ending(self.reap(handle), handle.end, handle.lost, handle.error)

    def sweep(self, handle: Handle) -> int:
        """The spawner sweeps after each end of its own attempts."""
        return 0 if isinstance(handle, SpawnHandle) else super().sweep(handle)

    def close(self) -> None:
        self.committed()
        self.flush()
        self._end_spawner()
        super().close()


def _kill_and_collect(handles: list[SpawnHandle]) -> None:
    """SIGKILL and reap the dead spawner's attempts (passed to this subreaper): those whose pid
    came, and any child carrying one of their launch tags."""
    needles = [f"{ENV_LAUNCH}={h.tag}".encode() + b"\0" for h in handles]
    known = {h.pid for h in handles if h.pid is not None}
    for pid in children(os.getpid()):
        if pid not in known and not any(n in process_environ(pid) for n in needles):
            continue
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


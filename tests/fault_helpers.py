"""Helpers for the fault-injection engine tests (fencing, faults, several managers).

Everything here drives real processes: managers are started as
``python -m ensemble.alloc.execution SETUP_DIR OPTIONS_JSON`` (so a test sees their exit
code), frozen with SIGSTOP/SIGCONT, and observed through the database and
``/proc``.  Waiting is always "poll a condition with a generous bound".
"""
from __future__ import annotations

import contextlib
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import GUARD_MINUTES, engine_dir, proc_state, wait_for

from ensemble import Ensemble
from ensemble.alloc.execution import options_spec
from ensemble.executors.procs import kill_tagged
from ensemble.prep.hooks import ENV_MANAGER
from ensemble.store import DB_NAME

#: x86-64 syscall numbers of nanosleep and clock_nanosleep: where SQLite's busy handler sleeps
#: while another connection holds the write lock (the engine's loop sleeps in epoll_wait instead).
SLEEP_SYSCALLS = {"35", "230"}
_MANAGERS: list["Manager"] = []
_MANAGER_IDS: set[str] = set()


# -- starting managers ------------------------------------------------------------------------------
def options_json(**options: Any) -> str:
    """OPTIONS_JSON for ``python -m ensemble.alloc.execution`` (what options_spec returns)."""
    spec_args = dict(timeout=GUARD_MINUTES, parallelism=1, allow_multiple=False, max_concurrency=None, cores=1,
                     gpus=0)
    accepted = inspect.signature(options_spec).parameters
    for key in list(options):
        if key not in spec_args and key not in accepted:
            raise TypeError(f"options_spec does not take {key!r}")
    spec_args.update(options)
    return json.dumps(options_spec(**spec_args))


class Manager:
    """A manager process this test started itself (so it can read its exit code)."""

    def __init__(self, ens: Ensemble, env: dict[str, str] | None, **options: Any) -> None:
        self.ens = ens
        logs = ens.setup_dir / "logs"
        with open(logs / "manager.out", "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "ensemble.alloc.execution", str(ens.setup_dir), options_json(**options)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=ens.setup_dir, env={**os.environ, **(env or {})})
        self.kept = (env or {}).get("ENSEMBLE_KEEPER", os.environ.get("ENSEMBLE_KEEPER", "1")) != "0"
        self._pid: int | None = None
        self.id: str | None = None
        _MANAGERS.append(self)

    @property
    def pid(self) -> int:
        """The manager's pid: its engine, the child of the process started (the keeper)."""
        if self._pid is None:
            self._pid = self.popen.pid if not self.kept else wait_for(
                lambda: next(iter(children(self.popen.pid)), None), f"the engine of {self.popen.pid} to start")
        return self._pid

    def wait_lease(self) -> str:
        """Wait until this manager holds its lease; return its manager id."""
        def mine() -> str | None:
            for lease in self.ens.store.leases():
                if lease["pid"] == self.pid:
                    return lease["manager"]
            assert self.popen.poll() is None, f"manager exited with {self.popen.returncode} before its lease"
            return None
        self.id = wait_for(mine, f"manager {self.pid} to hold its lease")
        _MANAGER_IDS.add(self.id)
        return self.id

    def wait(self, deadline: float = 30.0) -> int:
        """Wait for the exit code (a generous bound; the test fails, not hangs, past it)."""
        try:
            return self.popen.wait(timeout=deadline)
        except subprocess.TimeoutExpired:
            pytest.fail(f"manager {self.pid} still running after {deadline:.0f} s")


def children(pid: int) -> list[int]:
    """Pids whose parent is ``pid``."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def spawn_manager(ens: Ensemble, env: dict[str, str] | None = None, wait_lease: bool = True,
                  **options: Any) -> Manager:
    manager = Manager(ens, env, **options)
    if wait_lease:
        manager.wait_lease()
    return manager


# -- freezing, locks, /proc ----------------------------------------------------------------------------
def freeze(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: proc_state(pid) in ("T", "t"), f"process {pid} to stop")


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


def db_file(ens: Ensemble) -> Path:
    return ens.setup_dir / DB_NAME


def freeze_outside_transaction(pid: int, ens: Ensemble) -> None:
    """SIGSTOP ``pid`` at a moment it holds no write lock on the database (retrying otherwise):
    a manager frozen inside a transaction would block every other writer."""
    def frozen_unlocked() -> bool:
        freeze(pid)
        conn = sqlite3.connect(db_file(ens), timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            thaw(pid)
            return False
        finally:
            conn.close()
    wait_for(frozen_unlocked, f"process {pid} to be frozen outside a transaction")


class DbLock:
    """The database's write lock, held by the test (``BEGIN IMMEDIATE`` on its own connection)."""

    def __init__(self, ens: Ensemble) -> None:
        self.conn = sqlite3.connect(db_file(ens), timeout=30, isolation_level=None)
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.held = False


@contextlib.contextmanager
def db_lock(ens: Ensemble) -> Iterator[DbLock]:
    lock = DbLock(ens)
    try:
        yield lock
    finally:
        lock.release()


def in_sleep_syscall(pid: int) -> bool:
    """Whether ``pid`` sleeps in nanosleep (SQLite waiting for a lock), not in epoll_wait."""
    try:
        with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
            return f.read().split()[0] in SLEEP_SYSCALLS
    except (OSError, IndexError):
        return False


def signal_pending(pid: int, sig: int) -> bool:
    """Whether ``sig`` is still pending (not yet delivered) for ``pid``."""
    bit = 1 << (sig - 1)
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return bool((int(fields["SigPnd"].strip(), 16) | int(fields["ShdPnd"].strip(), 16)) & bit)


def has_open(pid: int, name: str) -> bool:
    """Whether ``pid`` has a file descriptor open on a path ending with ``name``."""
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").endswith(name):
                    return True
    except OSError:
        pass
    return False


def environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return {}
    return dict(item.decode(errors="replace").split("=", 1) for item in data.split(b"\0") if b"=" in item)


def live_tagged(manager_id: str, steps_only: bool = False) -> list[int]:
    """Live (not zombie) processes carrying ``ENSEMBLE_MANAGER=manager_id``; with ``steps_only``
    only steps (they carry ``ENSEMBLE_ATTEMPT``), not hook workers."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        env = environ(int(entry.name))
        if env.get(ENV_MANAGER) == manager_id and (not steps_only or "ENSEMBLE_ATTEMPT" in env):
            if proc_state(int(entry.name)) not in (None, "Z"):
                found.append(int(entry.name))
    return found


def manager_log(ens: Ensemble) -> str:
    path = ens.setup_dir / "logs" / "manager.log"
    return path.read_text(errors="replace") if path.exists() else ""


def manager_out(ens: Ensemble) -> str:
    path = ens.setup_dir / "logs" / "manager.out"
    return path.read_text(errors="replace") if path.exists() else ""


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


# -- cleanup -------------------------------------------------------------------------------------------
def _cleanup_managers(root: Path) -> None:
    """Kill the managers this test started (frozen ones included) and every process tagged with a
    manager id found in the databases under ``root``, whatever host its lease names."""
    while _MANAGERS:
        manager = _MANAGERS.pop()
        if manager.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(manager.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(manager.pid, signal.SIGCONT)
            manager.popen.wait()
    ids = set(_MANAGER_IDS)
    _MANAGER_IDS.clear()
    for db in root.rglob(DB_NAME):
        with contextlib.suppress(sqlite3.Error):
            conn = sqlite3.connect(db, timeout=30)
            try:
                ids |= {r[0] for r in conn.execute("SELECT manager FROM leases UNION SELECT manager FROM attempts")}
            finally:
                conn.close()
    kill_tagged(ids)


def fault_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Body of the ``fdir`` fixture of the fault test files: like ``edir``, and also kills the
    managers started with :func:`spawn_manager` (frozen ones too) and whatever they tagged."""
    gen = engine_dir(tmp_path, monkeypatch)
    path = next(gen)
    try:
        yield path
    finally:
        _cleanup_managers(tmp_path)
        with contextlib.suppress(StopIteration):
            next(gen)


def wait_gone(pid: int, what: str, deadline: float = 30.0) -> None:
    wait_for(lambda: proc_state(pid) in (None, "Z"), what, deadline)


def now() -> float:
    return time.time()

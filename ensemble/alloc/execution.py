"""Starting the engine: in this process (blocking) or as a detached manager process."""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensemble.alloc.backends import check_mpi, choose_backend, resolve_launcher
from ensemble.engine import (
    EXIT_DISK_FULL,
    EXIT_LEASE_LOST,
    EXIT_MAX_FAILED,
    EXIT_RUNS_FAILED,
    EXIT_WORK_LEFT,
    Engine,
    EngineOptions,
)
from ensemble.engine.keeper import keeper_possible, run_kept
from ensemble.errors import EnsembleBusy, EnsembleError, ManagerFailed, SpecError, SpecTypeError
from ensemble.providers.local import gpu_option
from ensemble.spec.options import check_run_range, manager_options, positive
from ensemble.store import Store
from ensemble.store.lease import live_leases

PID_FILE = "manager.pid"
READY_FD = "ENSEMBLE_READY_FD"
PARENT_PID = "ENSEMBLE_PARENT_PID"
PR_SET_PDEATHSIG = 1
#: Exit statuses that report how the runs went, not a failure of the manager.
RESULT_CODES = (EXIT_RUNS_FAILED, EXIT_MAX_FAILED, EXIT_WORK_LEFT)
EXIT_MESSAGES = {EXIT_DISK_FULL: "the file system is full", EXIT_LEASE_LOST: "its lease was taken over",
                 2: "it could not start or a hook failed"}


def options_spec(timeout: Any, parallelism: Any, allow_multiple: Any, max_concurrency: Any, cores: Any,
                 gpus: Any, kill_grace: Any = 3.0, log_layout: Any = "split", launcher: Any = None,
                 mpi: Any = None, early_stop: Any = None, queued: int = 0, use_flux: Any = False,
                 run_range: Any = None) -> dict[str, Any]:
    """Validated execution options as plain JSON (what a manager process receives); the launcher
    is resolved here (``auto`` becomes what was detected, with ``queued`` runs waiting and the
    ensemble's ``use_flux``) and the allocation is read once."""
    spec = manager_options(parallelism, allow_multiple, max_concurrency, kill_grace, log_layout, mpi, early_stop)
    spec.update(timeout=positive("timeout", timeout, float), cores=positive("cores", cores),
                run_range=check_run_range(run_range),
                gpus=gpu_option(gpus), launcher=resolve_launcher(launcher, queued=queued, use_flux=use_flux))
    spec["mpi"] = check_mpi(mpi, spec["launcher"])
    provider = choose_backend(spec["launcher"], spec["mpi"], spec["cores"], spec["gpus"]).provider
    provider.nodes()
    _check_early_stop(spec["early_stop"], spec["timeout"], provider.end_time())
    return spec


def _check_early_stop(early_stop: float | None, timeout: float | None, alloc_end: float | None) -> None:
    """``early_stop`` counts back from an end: ``timeout`` or the allocation's; it must leave time."""
    if early_stop is None:
        return
    if timeout is None and alloc_end is None:
        raise SpecError(f"early_stop: {early_stop!r} minutes before an end, but there is none here "
                        "(give timeout= or --timeout, or run inside an allocation with a time limit)")
    if timeout is not None and early_stop >= timeout:
        raise SpecError(f"early_stop: must be shorter than timeout ({timeout!r} minutes), got {early_stop!r}")


def _check_not_busy(store: Store, allow_multiple: bool) -> None:
    for lease in live_leases(store):
        if not (allow_multiple and lease["allow_multiple"]):
            raise EnsembleBusy(f"ensemble is already executing: manager pid {lease['pid']} on {lease['host']} "
                               "(start both with allow_multiple=True, or --allow-multiple, to share the work)")


def execute_local(setup_dir: Path, store: Store, blocking: bool, in_process: bool = False,
                  **options: Any) -> int | None:
    """Validate options, then run a manager: in this process (``in_process``, for the CLI), as a
    child this process waits for (``blocking``), or detached.  Return the detached pid; in process,
    the result code (0 or an EXIT_* of :data:`RESULT_CODES`); else None."""
    if not isinstance(blocking, bool):
        raise SpecTypeError(f"blocking: expected True or False, got {blocking!r}")
    spec = options_spec(**options, queued=store.count_queued(),
                        use_flux=(store.get_meta("config") or {}).get("use_flux", False))
    _check_not_busy(store, spec["allow_multiple"])
    if blocking and in_process:
        code = run_engine(setup_dir, dict(spec))
    elif blocking:
        code = _wait_for_child(setup_dir, spec)
    else:
        popen, manager_pid = _spawn_detached(setup_dir, spec)
        # Reap the detached manager whenever it exits: unreaped, a dead manager would stay a
        # zombie of this process and its lease would look alive.
        threading.Thread(target=popen.wait, name=f"ensemble-reaper-{popen.pid}", daemon=True).start()
        return manager_pid
    if code > 128:
        signal.raise_signal(code - 128)
    if code in RESULT_CODES or code == 0:
        return code if in_process else None
    if code == 2 and not in_process:
        tail = (setup_dir / "logs" / "manager.out").read_text(errors="replace").strip().splitlines()[-1:]
        raise ManagerFailed(tail[0].removeprefix("ensemble: error: ") if tail else EXIT_MESSAGES[2], code)
    if code:
        why = EXIT_MESSAGES.get(code, "an internal error")
        raise ManagerFailed(f"manager exited with {code}: {why} (see {setup_dir}/logs/manager.log)", code)
    return None


def run_engine(setup_dir: Path, spec: dict[str, Any], on_ready: Callable[[str], None] | None = None,
               early_signal: Callable[[], int | None] | None = None,
               on_end: Callable[[], None] | None = None) -> int:
    """Run the engine with its log in ``<setup_dir>/logs/manager.log``: in a process of its own
    under this one, which keeps the exit statuses of its steps if it dies (:mod:`ensemble.engine.keeper`),
    or in this process with ``ENSEMBLE_KEEPER=0``.  ``on_ready`` and ``on_end`` run in the
    engine's process."""
    def body(ready: Callable[[str], None] | None) -> int:
        def announce(manager: str) -> None:
            if ready is not None:
                ready(manager)
            if on_ready is not None:
                on_ready(manager)
        try:
            return _run_engine_here(setup_dir, dict(spec), announce, early_signal)
        finally:
            if on_end is not None:
                on_end()

    if not keeper_possible():
        return body(None)
    ready_fd = os.environ.get(READY_FD)
    return run_kept(body, setup_dir, close_in_keeper=(int(ready_fd),) if ready_fd else ())


def _run_engine_here(setup_dir: Path, spec: dict[str, Any], on_ready: Callable[[str], None],
                     early_signal: Callable[[], int | None] | None) -> int:
    handler = logging.FileHandler(setup_dir / "logs" / "manager.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    logger = logging.getLogger("ensemble")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        backend = choose_backend(spec.pop("launcher"), spec.pop("mpi"), spec.pop("cores"), spec.pop("gpus"))
        run_range = spec.pop("run_range", None)
        options = EngineOptions(**spec, run_range=tuple(run_range) if run_range else None)
        return Engine(setup_dir, backend.provider, backend.launcher, options,
                      executor=backend.executor, on_ready=on_ready, early_signal=early_signal).run()
    finally:
        logger.removeHandler(handler)
        handler.close()


def _spawn_detached(setup_dir: Path, spec: dict[str, Any], tied: bool = False) -> tuple[subprocess.Popen, int]:
    """Start a manager process and wait until it holds its lease; return it and the manager's pid.

    The manager says "ready" and its pid on a pipe once it holds the lease (and has written
    ``manager.pid``); end of file before that means it failed to start.  The manager is the
    engine's process: a child of the returned one (its keeper) unless ``ENSEMBLE_KEEPER=0``.
    """
    read, write = os.pipe2(os.O_CLOEXEC)
    out = open(setup_dir / "logs" / "manager.out", "ab")
    with out:
        popen = subprocess.Popen([sys.executable, "-m", "ensemble.alloc.execution", str(setup_dir), json.dumps(spec)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=setup_dir, pass_fds=(write,),
                                 env={**os.environ, READY_FD: str(write),
                                      **({PARENT_PID: str(os.getpid())} if tied else {})})
    os.close(write)
    with os.fdopen(read, "rb") as ready:
        said = ready.readline()
    words = said.split()
    if words[:1] == [b"ready"] and len(words) == 2:
        return popen, int(words[1])
    code = popen.wait()
    tail = (setup_dir / "logs" / "manager.out").read_text(errors="replace").strip().splitlines()[-1:]
    if code == 2 and tail and "already executing" in tail[0]:
        raise EnsembleBusy(tail[0].removeprefix("ensemble: error: "))
    raise EnsembleError(f"manager exited with {code} at start: {tail[0] if tail else 'no output'}")


def _wait_for_child(setup_dir: Path, spec: dict[str, Any]) -> int:
    """Run a manager as a child and wait for it, passing on SIGINT/SIGTERM/SIGHUP; the child
    gets SIGTERM if this process dies (a blocking manager never outlives its caller)."""
    popen, _ = _spawn_detached(setup_dir, spec, tied=True)
    forward = lambda signum, frame: popen.send_signal(signum)  # noqa: E731
    saved = {}
    if threading.current_thread() is threading.main_thread():
        saved = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        return popen.wait()
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _announce(setup_dir: Path, manager: str) -> None:
    """The manager holds its lease: write ``manager.pid`` (atomically) and tell the starter."""
    tmp = setup_dir / f".{PID_FILE}.{os.getpid()}"
    tmp.write_text(f"{os.getpid()}\n")
    os.replace(tmp, setup_dir / PID_FILE)
    fd = os.environ.pop(READY_FD, None)
    if fd is not None:
        try:
            os.write(int(fd), f"ready {os.getpid()}\n".encode())
            os.close(int(fd))
        except OSError:
            pass


def _tie_to_parent() -> None:
    """Ask for SIGTERM when the process that waits for this manager dies."""
    parent = os.environ.pop(PARENT_PID, None)
    if parent is None:
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != int(parent):
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """A manager process: ``python -m ensemble.alloc.execution SETUP_DIR OPTIONS_JSON``.

    Signals are recorded from the first line on (and stay handled until the process exits),
    so a SIGTERM at any moment ends in a clean shutdown with status 143.
    """
    early: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, frame: early.append(signum))
    _tie_to_parent()
    args = sys.argv[1:] if argv is None else argv
    setup_dir = Path(args[0])
    announced = []

    def remove_pid_file() -> None:
        pid_file = setup_dir / PID_FILE
        if announced and pid_file.is_file() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()

    try:
        return run_engine(setup_dir, json.loads(args[1]), early_signal=lambda: early[0] if early else None,
                          on_ready=lambda manager: announced.append(_announce(setup_dir, manager)),
                          on_end=remove_pid_file)
    except EnsembleError as exc:
        print(f"ensemble: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        # The interpreter restores default handlers while it finalises: a late SIGTERM must not
        # turn this exit status into death by signal.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


if __name__ == "__main__":
    sys.exit(main())

"""Starting the engine: in this process (blocking) or as a detached manager process."""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ensemble.engine import Engine, EngineOptions
from ensemble.errors import EnsembleBusy, EnsembleError, SpecError, SpecTypeError
from ensemble.launchers import get_launcher
from ensemble.lease import live_leases
from ensemble.providers import LocalProvider
from ensemble.providers.local import gpu_option
from ensemble.store import Store

PID_FILE = "manager.pid"
START_WAIT_SECONDS = 60.0


def _positive(name: str, value: Any, number: type = int) -> Any:
    if value is None:
        return None
    kinds = (int, float) if number is float else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise SpecTypeError(f"{name}: expected a positive {'number' if number is float else 'integer'}, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise SpecError(f"{name}: must be > 0, got {value!r}")
    return value


def options_spec(timeout: Any, parallelism: Any, allow_multiple: Any, max_concurrency: Any, cores: Any,
                 gpus: Any) -> dict[str, Any]:
    """Validated execution options as plain JSON (what a detached manager receives)."""
    if not isinstance(allow_multiple, bool):
        raise SpecTypeError(f"allow_multiple: expected True or False, got {allow_multiple!r}")
    gpus = gpu_option(gpus)
    spec = dict(timeout=_positive("timeout", timeout, float), parallelism=_positive("parallelism", parallelism) or 1,
                allow_multiple=allow_multiple, max_concurrency=_positive("max_concurrency", max_concurrency),
                cores=_positive("cores", cores), gpus=gpus, launcher="local")
    LocalProvider(spec["cores"], spec["gpus"]).nodes()
    return spec


def _check_not_busy(store: Store, allow_multiple: bool) -> None:
    for lease in live_leases(store):
        if not (allow_multiple and lease["allow_multiple"]):
            raise EnsembleBusy(f"ensemble is already executing: manager pid {lease['pid']} on {lease['host']} "
                               "(pass allow_multiple=True to both to share the work)")


def execute_local(setup_dir: Path, store: Store, blocking: bool, **options: Any) -> int | None:
    """Validate options, then run the engine here (blocking) or detached."""
    if not isinstance(blocking, bool):
        raise SpecTypeError(f"blocking: expected True or False, got {blocking!r}")
    spec = options_spec(**options)
    _check_not_busy(store, spec["allow_multiple"])
    if blocking:
        code = run_engine(setup_dir, dict(spec))
        if code > 128:
            signal.raise_signal(code - 128)
        return None
    return _spawn_detached(setup_dir, spec, store)


def run_engine(setup_dir: Path, spec: dict[str, Any]) -> int:
    """Run the engine in this process with its log in ``<setup_dir>/logs/manager.log``."""
    handler = logging.FileHandler(setup_dir / "logs" / "manager.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    logger = logging.getLogger("ensemble")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        provider = LocalProvider(spec.pop("cores"), spec.pop("gpus"))
        launcher = get_launcher(spec.pop("launcher"))
        return Engine(setup_dir, provider, launcher, EngineOptions(**spec)).run()
    finally:
        logger.removeHandler(handler)
        handler.close()


def _spawn_detached(setup_dir: Path, spec: dict[str, Any], store: Store) -> int:
    """Start a manager process and wait until it holds the lease (or finished); return its pid."""
    out = open(setup_dir / "logs" / "manager.out", "ab")
    with out:
        popen = subprocess.Popen([sys.executable, "-m", "ensemble.execution", str(setup_dir), json.dumps(spec)],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True, cwd=setup_dir)
    (setup_dir / PID_FILE).write_text(f"{popen.pid}\n")
    deadline = time.monotonic() + START_WAIT_SECONDS
    while time.monotonic() < deadline:
        if any(lease["pid"] == popen.pid for lease in store.leases()):
            # Reap the manager whenever it exits: unreaped, a dead manager (even one killed by
            # SIGKILL) would stay a zombie of this process and its lease would look alive.
            threading.Thread(target=popen.wait, name=f"ensemble-reaper-{popen.pid}", daemon=True).start()
            return popen.pid
        code = popen.poll()
        if code == 0:
            return popen.pid
        if code is not None:
            tail = (setup_dir / "logs" / "manager.out").read_text(errors="replace").strip().splitlines()[-1:]
            raise EnsembleError(f"manager exited with {code} at start: {tail[0] if tail else 'no output'}")
        time.sleep(0.02)
    raise EnsembleError(f"manager pid {popen.pid} did not start within {START_WAIT_SECONDS:.0f} s "
                        f"(see {setup_dir}/logs/manager.out)")


def main(argv: list[str] | None = None) -> int:
    """Detached manager: ``python -m ensemble.execution SETUP_DIR OPTIONS_JSON``."""
    args = sys.argv[1:] if argv is None else argv
    setup_dir = Path(args[0])
    try:
        return run_engine(setup_dir, json.loads(args[1]))
    except EnsembleError as exc:
        print(f"ensemble: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        pid_file = setup_dir / PID_FILE
        if pid_file.is_file() and pid_file.read_text().strip() == str(os.getpid()):
            pid_file.unlink()


if __name__ == "__main__":
    sys.exit(main())

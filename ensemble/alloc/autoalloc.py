"""Automatic allocations: :meth:`Ensemble.execute_alloc` with ``max_allocations=K``.

Submitting writes one batch script and the pool's ledger (:mod:`ensemble.providers.pool`), then
looks at the pool once, which submits the first allocations.  Every job of the pool runs
``ensemble execute --block --allow-multiple --pool <ledger>``; :func:`run_in_pool` makes that
manager a tender of the pool: it looks at the pool when it starts, every
:data:`TEND_EVERY` seconds while it runs (a small process beside it, so the engine's loop knows
nothing of batch systems), and once more as it ends (not counting itself), so allocations are
submitted while work waits, pending ones are cancelled as soon as nothing waits, and one that
died is replaced while its work is left.  There is no server: the pool lives in its ledger and
in the batch system's queue.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ensemble.alloc.chain import batch_system, discard_script, script_text
from ensemble.errors import EnsembleError, SpecError
from ensemble.providers import pool
from ensemble.providers.batchqueue import BatchQueue, FluxQueue, SlurmQueue
from ensemble.providers.sbatch import BATCH_DIR, AllocRequest, write_script
from ensemble.setup import allocations
from ensemble.setup.handle import EnsembleHandle
from ensemble.store.lease import live_leases

#: Seconds between two looks at the pool by a running allocation (``ENSEMBLE_POOL_EVERY`` overrides).
TEND_EVERY = 30.0
TEND_EVERY_ENV = "ENSEMBLE_POOL_EVERY"


def queue_for(system: str, use_flux: object = True) -> BatchQueue:
    """The queue of ``system`` (``slurm`` or ``flux``)."""
    return FluxQueue(use_flux or True) if system == "flux" else SlurmQueue()


def backlog(ensemble: EnsembleHandle) -> int:
    """Queued runs no live manager holds (a dead allocation's claimed runs count as waiting)."""
    return ensemble.store.count_backlog([lease["manager"] for lease in live_leases(ensemble.store)])


def capacity(ensemble: EnsembleHandle, request: AllocRequest, queue: BatchQueue) -> int:
    """Runs one allocation holds at once: its cores over the widest step of the first queued run
    (cores per node from ``sinfo`` or ``flux resource list``; one run per node where they cannot
    be read), at most ``max_concurrency``."""
    first = ensemble.store.queued_ids(0, 1)
    steps = ensemble.store.runs(first)[0]["steps"] if first else []
    width = max((s.get("tasks", 1) * s.get("cores_per_task", 1) for s in steps), default=1)
    cores = queue.cores_per_node(request.partition)
    runs = request.nodes * max(1, (cores or width) // width)
    limit = request.manager["max_concurrency"]
    return max(1, min(runs, limit) if limit else runs)


def submit_pool(ensemble: EnsembleHandle, request: AllocRequest) -> str:
    """Write the script and the ledger, submit the first allocations; the first job's id."""
    system = batch_system(ensemble.config.use_flux)
    if system not in ("slurm", "flux"):
        raise SpecError(f"max_allocations: automatic allocations are built on Slurm and Flux, not {system.upper()}; "
                        f"got max_allocations={request.max_allocations!r}")
    waiting = backlog(ensemble)
    if not waiting:
        raise SpecError(f"max_allocations: no run is queued, so no allocation is needed "
                        f"(got max_allocations={request.max_allocations!r})")
    number = _next_number(ensemble.setup_dir / BATCH_DIR)
    ledger = pool.ledger_path(ensemble.setup_dir / BATCH_DIR, number)
    text = script_text(ensemble, request, "--pool", str(ledger))
    script = write_script(ensemble.setup_dir, text, suffix=".flux" if system == "flux" else ".sbatch")
    queue = queue_for(system, ensemble.config.use_flux)
    record = pool.PoolRecord(pool=f"pool-{number}", script=str(script), max_allocations=request.max_allocations,
                             capacity=capacity(ensemble, request, queue), system=system)
    pool.write(ledger, record)
    done = pool.tend(ledger, queue, lambda: waiting)
    if not done.submitted:
        for path in (ledger, ledger.with_suffix(".lock")):
            path.unlink(missing_ok=True)
        discard_script(script)
        raise EnsembleError(done.errors[0] if done.errors else "no allocation was submitted")
    report(ensemble, record.pool, done)
    return done.submitted[0]


def _next_number(directory: Path) -> int:
    taken = [int(m.group(1)) for p in directory.glob("ensemble-*") if (m := re.fullmatch(r"ensemble-(\d+)\.\w+", p.name))]
    return max(taken, default=0) + 1


def report(ensemble: EnsembleHandle, pool_id: str, done: pool.Tended, say: Callable[[str], None] | None = None) -> None:
    """Record what a look at the pool did as events (``alloc_pool_submitted`` / ``_cancelled``)."""
    for action, jobs in (("pool_submitted", done.submitted), ("pool_cancelled", done.cancelled)):
        for job in jobs:
            ensemble.submit_command(allocations.command(action, pool_id, job, running=done.running, pending=done.pending))
            if say:
                say(f"{pool_id}: {action.removeprefix('pool_')} allocation {job}")
    for error in done.errors:
        if say:
            say(f"{pool_id}: {error}")


def _say(message: str) -> None:
    print(f"ensemble: {message}", file=sys.stderr, flush=True)


def _stopped(ensemble: EnsembleHandle, since: float) -> bool:
    return (ensemble.store.get_meta("stop_requested") or 0) >= since


def run_in_pool(ensemble: EnsembleHandle, execute: Callable[[], int], ledger: Path) -> int:
    """Run ``execute`` (a blocking manager; its result code) as one allocation of a pool."""
    record = pool.read(ledger)
    queue = queue_for(record.system, ensemble.config.use_flux)
    started = time.time()
    report(ensemble, record.pool, pool.tend(ledger, queue, lambda: backlog(ensemble)), _say)
    if not backlog(ensemble):
        _say(f"{record.pool}: no run is waiting, nothing to do")
        return 0
    tender = subprocess.Popen([sys.executable, "-m", "ensemble.alloc.autoalloc", str(ensemble.setup_dir), str(ledger),
                               str(os.getpid())], stdin=subprocess.DEVNULL)
    try:
        code = execute()
    finally:
        tender.send_signal(signal.SIGTERM)
        tender.wait()
        done = pool.tend(ledger, queue, lambda: backlog(ensemble), ending=queue.current_job(),
                         stopped=_stopped(ensemble, started))
        report(ensemble, record.pool, done, _say)
    return code


def tend_forever(setup_dir: Path, ledger: Path, parent: int) -> int:
    """The tender beside a pool's manager: a look at the pool every :data:`TEND_EVERY` seconds
    until SIGTERM or until its manager's process is gone (a look under way is finished first, so
    a submitted job is always in the ledger)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # taken only between looks
    every = float(os.environ.get(TEND_EVERY_ENV) or TEND_EVERY)
    record = pool.read(ledger)
    started = time.time()
    with EnsembleHandle(setup_dir) as ensemble:
        queue = queue_for(record.system, ensemble.config.use_flux)
        while signal.sigtimedwait({signal.SIGTERM}, every) is None and os.getppid() == parent:
            done = pool.tend(ledger, queue, lambda: backlog(ensemble), stopped=_stopped(ensemble, started))
            report(ensemble, record.pool, done, _say)
    return 0


if __name__ == "__main__":
    sys.exit(tend_forever(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))

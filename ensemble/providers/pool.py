"""Automatic allocations: how many to keep, and the pool's ledger of the jobs it submitted.

The rule (:func:`plan`), with ``backlog`` the queued runs no manager has claimed, ``capacity``
the runs one allocation holds at once, ``limit`` the pool's ``max_allocations``:

* nothing waits (``backlog == 0``): cancel every pending allocation;
* else keep ``min(limit - running, backlog // capacity)`` allocations pending: an allocation
  is submitted only for a backlog that fills it, and no more than ``limit`` are ever queued or
  running together;
* but when none runs, keep one pending however small the backlog, so the work always finishes.

The ledger is ``<setup_dir>/batch/pool-<n>.json`` (the pool's settings and every job id it
submitted), changed only under a POSIX lock on ``pool-<n>.lock`` (``fcntl.lockf``: it works on
NFS), so managers in several allocations tending the same pool at once never exceed the limit.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ensemble.errors import EnsembleError
from ensemble.providers.batchqueue import BatchQueue, JobState


def plan(backlog: int, running: int, pending: int, capacity: int, limit: int) -> int:
    """Allocations to submit (> 0) or pending ones to cancel (< 0) under the rule above."""
    if backlog <= 0:
        return -pending
    wanted = max(0, min(limit - running, backlog // max(1, capacity)))
    if running == 0:
        wanted = max(wanted, 1)
    return wanted - pending


@dataclass
class PoolRecord:
    """A pool as its ledger file holds it."""

    pool: str
    script: str
    max_allocations: int
    capacity: int
    system: str = "slurm"
    jobs: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


@dataclass
class Tended:
    """What one look at the pool did."""

    submitted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    running: int = 0
    pending: int = 0
    errors: list[str] = field(default_factory=list)


def ledger_path(batch_dir: Path, number: int) -> Path:
    return batch_dir / f"pool-{number}.json"


def read(path: Path) -> PoolRecord:
    return PoolRecord(**json.loads(path.read_text(encoding="utf-8")))


def write(path: Path, record: PoolRecord) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1), encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the pool's lock (one tender at a time, across hosts sharing the file system)."""
    with open(path.with_suffix(".lock"), "a+b") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)


def tend(path: Path, queue: BatchQueue, backlog: Callable[[], int], ending: str | None = None,
         stopped: bool = False) -> Tended:
    """Look at the pool once: count its pending and running jobs (``ending``, the allocation that
    is finishing, counts as neither), then submit or cancel as :func:`plan` says; with
    ``stopped`` (a stop was requested) cancel every pending one and submit none."""
    with locked(path):
        record = read(path)
        states = queue.active(j for j in record.jobs if j not in record.cancelled and j != ending)
        running = [j for j, s in states.items() if s is JobState.RUNNING]
        pending = [j for j in record.jobs if states.get(j) is JobState.PENDING]
        delta = -len(pending) if stopped else plan(backlog(), len(running), len(pending),
                                                   record.capacity, record.max_allocations)
        done = Tended(running=len(running), pending=len(pending))
        for job in pending[len(pending) + delta:] if delta < 0 else []:
            try:
                queue.cancel(job)
                done.cancelled.append(job)
            except EnsembleError as exc:
                done.errors.append(str(exc))
        for _ in range(max(0, delta)):
            try:
                done.submitted.append(queue.submit(Path(record.script)))
            except EnsembleError as exc:
                done.errors.append(str(exc))
                break
        record.jobs += done.submitted
        record.cancelled += done.cancelled
        write(path, record)
        return done


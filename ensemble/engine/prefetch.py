"""Hiding file-system latency: run directories and log files made ahead of launch.

On a slow file system (a parallel file system, or a disk whose metadata
operations cost a millisecond) a run's ``mkdir`` and its two log-file creations
dominate the cost of a launch.  When a probe at start shows the file system is
slow *and* that overlapping its metadata operations helps (latency, not CPU or a
lock), a few helper threads make the directories and open the log files of the
next runs in the queue while the loop launches the current ones.  The helpers
run almost no Python bytecode (three system calls per run, which release the
GIL), so they never slow the loop down.
"""
from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ensemble.executors.local import open_log

#: A file system is "slow" when one mkdir+rmdir pair takes longer than this on average.
SLOW_METADATA_SECONDS = 200e-6
PROBES = 8
#: The probe runs once this many runs wait at once (prefetch is for throughput; a small ensemble
#: would pay for the probe and gain nothing).
PREFETCH_MIN_RUNS = 64
THREADS = 4
#: Prefetch only where overlapping metadata operations makes them this much faster (a file
#: system whose creations are kernel CPU, or that serialises them, gains nothing).
MIN_OVERLAP_GAIN = 1.5
log = logging.getLogger("ensemble.engine")

Key = tuple[int, int, int]
Logs = tuple[int, int]


def _pairs(base: str, count: int) -> None:
    for i in range(count):
        os.mkdir(f"{base}-{i}")
        os.rmdir(f"{base}-{i}")


def metadata_cost(directory: Path, threads: int = 1) -> float:
    """Mean seconds per mkdir+rmdir pair in ``directory`` (the run directories' parent), with
    ``threads`` threads making pairs at once (wall time divided by all pairs made)."""
    directory.mkdir(parents=True, exist_ok=True)
    bases = [str(directory / f".ensemble-probe-{os.getpid()}-{t}") for t in range(threads)]
    start = time.perf_counter()
    if threads == 1:
        _pairs(bases[0], PROBES)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(_pairs, bases, [PROBES] * threads))
    return (time.perf_counter() - start) / (PROBES * threads)


def _make(run_dir: str, stdout: str, stderr: str) -> Logs:
    try:
        os.mkdir(run_dir)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(run_dir, exist_ok=True)
    out = open_log(stdout)
    try:
        return out, os.dup(out) if stderr == stdout else open_log(stderr)
    except BaseException:
        os.close(out)
        raise


#: The prefetcher before the first runs are read (the probe needs their directory).
UNDECIDED = object()


def decide_prefetch(directory: Path, waiting: int) -> Any:
    """A prefetcher if the file system holding ``directory`` is slow and overlapping helps (or
    ``ENSEMBLE_PREFETCH=1``; ``0`` switches it off); None if not; :data:`UNDECIDED` while
    fewer than :data:`PREFETCH_MIN_RUNS` runs wait."""
    forced = os.environ.get("ENSEMBLE_PREFETCH")
    if forced in ("0", "1"):
        log.info("prefetch forced %s by ENSEMBLE_PREFETCH", "on" if forced == "1" else "off")
        return Prefetcher() if forced == "1" else None
    if waiting < PREFETCH_MIN_RUNS:
        return UNDECIDED
    try:
        serial = metadata_cost(directory)
        overlapped = metadata_cost(directory, THREADS) if serial > SLOW_METADATA_SECONDS else serial
    except OSError as exc:
        log.warning("file-system probe in %s failed (%s): no prefetch", directory, exc)
        return None
    use = serial > SLOW_METADATA_SECONDS and serial / overlapped >= MIN_OVERLAP_GAIN
    log.info("file system of %s: mkdir+rmdir %.0f us alone, %.0f us with %d threads; %s", directory,
             serial * 1e6, overlapped * 1e6, THREADS,
             f"run directories and logs made ahead on {THREADS} threads" if use else "no prefetch")
    return Prefetcher() if use else None


class Prefetcher:
    """Makes run directories and opens log files ahead, on helper threads."""

    def __init__(self, threads: int = THREADS) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ensemble-prefetch")
        self.pending: dict[Key, Future[Logs]] = {}

    def ahead(self, key: Key, run_dir: str, stdout: str, stderr: str) -> None:
        if key not in self.pending:
            self.pending[key] = self.pool.submit(_make, run_dir, stdout, stderr)

    def take(self, key: Key) -> Logs | None:
        """The open log files made for ``key`` (waiting for them if still in the making), or
        None when nothing was made ahead or making it failed (the caller then does it itself)."""
        future = self.pending.pop(key, None)
        if future is None:
            return None
        try:
            return future.result()
        except OSError:
            return None

    def __len__(self) -> int:
        return len(self.pending)

    def close(self) -> None:
        """Close what was made ahead and never used."""
        self.pool.shutdown(wait=True)
        for future in self.pending.values():
            if future.exception() is None:
                for fd in future.result():
                    os.close(fd)
        self.pending.clear()

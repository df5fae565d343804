"""Hiding file-system latency: run directories and log files made ahead of launch.

On a slow file system (a parallel file system, or a disk whose metadata
operations cost a millisecond) a run's ``mkdir`` and its two log-file creations
dominate the cost of a launch.  When a probe at start shows the file system is
slow, a few helper threads make the directories and open the log files of the
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

from ensemble.executors.local import open_log

#: A file system is "slow" when one mkdir+rmdir pair takes longer than this on average.
SLOW_METADATA_SECONDS = 200e-6
PROBES = 8
THREADS = 4
log = logging.getLogger("ensemble.engine")

Key = tuple[int, int, int]
Logs = tuple[int, int]


def metadata_cost(directory: Path) -> float:
    """Mean seconds of one mkdir+rmdir pair in ``directory`` (the run directories' parent)."""
    directory.mkdir(parents=True, exist_ok=True)
    base = str(directory / f".ensemble-probe-{os.getpid()}")
    start = time.perf_counter()
    for i in range(PROBES):
        os.mkdir(f"{base}-{i}")
        os.rmdir(f"{base}-{i}")
    return (time.perf_counter() - start) / PROBES


def _make(run_dir: str, stdout: str, stderr: str) -> Logs:
    try:
        os.mkdir(run_dir)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(run_dir, exist_ok=True)
    out = open_log(stdout)
    try:
        return out, open_log(stderr)
    except BaseException:
        os.close(out)
        raise


#: The prefetcher before the first runs are read (the probe needs their directory).
UNDECIDED = object()


def decide_prefetch(directory: Path) -> "Prefetcher | None":
    """A prefetcher if the file system holding ``directory`` is slow (or ``ENSEMBLE_PREFETCH=1``;
    ``ENSEMBLE_PREFETCH=0`` switches it off)."""
    forced = os.environ.get("ENSEMBLE_PREFETCH")
    try:
        cost = metadata_cost(directory)
    except OSError as exc:
        log.warning("file-system probe in %s failed (%s): no prefetch", directory, exc)
        return None
    use = forced == "1" or (forced != "0" and cost > SLOW_METADATA_SECONDS)
    log.info("file system of %s: mkdir+rmdir %.0f us; %s", directory, cost * 1e6,
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

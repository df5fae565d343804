#!/usr/bin/env python
"""Benchmark: readers while an ensemble executes (issue 12's concurrency figures).

Executes N one-step ``/bin/true`` runs twice with the same manager options: alone (the baseline),
then while reader processes loop without pause over ``ensemble status``, ``ensemble write csv``,
``as_dataframe()`` and the dashboard's ``/api/status`` (each in its own process, read-only).
Prints the execution time of both, their ratio (the slowdown the readers cause), every reader's
count of calls and errors, and the longest gap between two consecutive attempt ends in the run
with readers next to the same figure without them (a writer stalled by a reader shows as a
longer gap).

Usage::

    python benchmarks/readers.py                 # N = 5,000
    python benchmarks/readers.py --runs 2000
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ensemble import Ensemble, Run

READERS = ("status", "write_csv", "as_dataframe", "dashboard_api")


def make(work: Path, name: str, n: int) -> Ensemble:
    os.chdir(work)
    return Ensemble.create(application="/bin/true", runs=[Run({"x": i}) for i in range(n)],
                           app_is_batch_script=False, setup_dir=name, run_dir_names=f"{name}-runs/{{run_id}}")


def longest_gap(ens: Ensemble) -> float:
    ends = sorted(a["end"] for a in ens.attempts() if a["end"] is not None)
    return max((b - a for a, b in zip(ends, ends[1:])), default=0.0)


def reader(kind: str, setup: str, stop, out) -> None:
    """Loop one kind of read until ``stop`` is set; put (kind, calls, errors, first error)."""
    calls, errors, first = 0, 0, None
    dashboard = None
    if kind == "dashboard_api":
        from ensemble.store import Store
        from ensemble.watch.dashboard.data import status
        dashboard = (lambda store: status(store, time.time()), Store)
    while not stop.is_set():
        try:
            if kind == "status":
                subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", setup, "status", "--json"],
                               check=True, capture_output=True)
            elif kind == "write_csv":
                subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", setup, "write", "csv", "-o",
                                os.devnull], check=True, capture_output=True)
            elif kind == "as_dataframe":
                with Ensemble(setup) as ens:
                    ens.as_dataframe()
            else:
                payload, store_class = dashboard
                store = store_class.open(Path(setup), readonly=True)
                try:
                    payload(store)
                finally:
                    store.close()
        except Exception as exc:  # noqa: BLE001 - counted and reported, the benchmark goes on
            errors += 1
            first = first or f"{type(exc).__name__}: {exc}"
        calls += 1
    out.put((kind, calls, errors, first))


def execute(ens: Ensemble) -> float:
    start = time.perf_counter()
    ens.execute_local(blocking=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ensemble-readers-"))
    alone = make(work, "alone", args.runs)
    busy = make(work, "busy", args.runs)
    alone_s = execute(alone)
    context = multiprocessing.get_context("spawn")
    stop, out = context.Event(), context.Queue()
    procs = [context.Process(target=reader, args=(kind, str(work / "busy"), stop, out)) for kind in READERS]
    for proc in procs:
        proc.start()
    time.sleep(1.0)  # the readers are up and looping before the manager starts
    busy_s = execute(busy)
    stop.set()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join()
    report = {"runs": args.runs, "cores": len(os.sched_getaffinity(0)), "alone_s": round(alone_s, 2),
              "with_readers_s": round(busy_s, 2), "slowdown": round(busy_s / alone_s, 2),
              "longest_end_gap_alone_s": round(longest_gap(alone), 3),
              "longest_end_gap_with_readers_s": round(longest_gap(busy), 3),
              "success": busy.count_by_status(Ensemble.RUN_SUCCESS),
              "readers": {k: {"calls": c, "errors": e, "first_error": f} for k, c, e, f in results}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

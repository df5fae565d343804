#!/usr/bin/env python
"""Benchmark: create an ensemble of N runs, then ask for its status.

Measures, in one process and on one database:

* building N ``Run`` objects (3-key sample, application ``/bin/true``,
  ``app_is_batch_script=False``) and ``Ensemble.create`` on them;
* ``ensemble status`` and ``ensemble status --json`` as real subprocesses
  (median of ``--repeat`` runs);
* baselines: interpreter start (``python -c pass``), ``python -c "import
  ensemble.cli"`` (start plus the CLI's imports) and, in this process, a raw
  ``sqlite3`` ``SELECT status, COUNT(*) FROM runs GROUP BY status`` on the same
  database (connect + query).

Usage::

    python benchmarks/create_and_status.py              # N = 100,000
    python benchmarks/create_and_status.py --runs 10000 --repeat 7

Everything happens in a temporary directory that is removed afterwards
(``--keep`` keeps it).
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ensemble import Ensemble, Run


def median_time(argv: list[str], repeat: int, cwd: Path) -> tuple[float, list[float]]:
    """Median wall time of running ``argv`` ``repeat`` times (one warm-up run first)."""
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def raw_sqlite(db: Path, repeat: int) -> tuple[float, list[tuple[int, int]]]:
    """Median time of connect + ``SELECT status, COUNT(*) ... GROUP BY status`` + close."""
    times, rows = [], []
    for _ in range(repeat + 1):
        start = time.perf_counter()
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        rows = conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall()
        conn.close()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), rows


def ensemble_command() -> list[str]:
    """The installed ``ensemble`` console script next to this interpreter (no PATH shims)."""
    script = Path(sys.executable).parent / "ensemble"
    if script.is_file():
        return [str(script)]
    found = shutil.which("ensemble")
    if found:
        return [found]
    return [sys.executable, "-m", "ensemble.cli"]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms"


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<40}{value}{'  ' + note if note else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="number of runs (default 100000)")
    parser.add_argument("--repeat", type=int, default=5, help="subprocess timings per figure; median reported")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.runs < 1 or args.repeat < 1:
        parser.error("--runs and --repeat must be >= 1")

    work = Path(tempfile.mkdtemp(prefix="ensemble-bench-"))
    old_cwd = os.getcwd()
    os.chdir(work)  # run directories (runs/{run_id}) are resolved against the current directory
    try:
        setup = work / "bench.ens"
        print(f"ensemble create/status benchmark: {args.runs:,} runs, median of {args.repeat}")
        print(f"  date     {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
        print(f"  machine  {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
        print(f"  python   {platform.python_version()} ({sys.executable})")
        print(f"  work dir {work}")
        print()

        start = time.perf_counter()
        runs = [Run({"x": i, "y": i * 0.5, "name": f"case{i}"}) for i in range(args.runs)]
        build = time.perf_counter() - start

        start = time.perf_counter()
        ens = Ensemble.create(application="/bin/true", runs=runs, setup_dir=setup, app_is_batch_script=False)
        create = time.perf_counter() - start
        total = ens.count_by_status()
        ens.close()
        assert total == args.runs, (total, args.runs)
        db = setup / "ensemble.db"
        size = db.stat().st_size

        cmd = ensemble_command()
        status, status_all = median_time([*cmd, "--setup-dir", str(setup), "status"], args.repeat, work)
        status_json, status_json_all = median_time([*cmd, "--setup-dir", str(setup), "status", "--json"],
                                                   args.repeat, work)
        interp, interp_all = median_time([sys.executable, "-c", "pass"], args.repeat, work)
        imports, imports_all = median_time([sys.executable, "-c", "import ensemble.cli"], args.repeat, work)
        query, rows = raw_sqlite(db, args.repeat)

        print("create")
        line(f"build {args.runs:,} Run objects", ms(build), f"({build / args.runs * 1e6:.1f} us/run)")
        line("Ensemble.create", ms(create), f"({create / args.runs * 1e6:.1f} us/run)")
        line("database size", f"{size / 2**20:9.1f} MiB", f"({size / args.runs:.0f} B/run)")
        print()
        print(f"status (subprocess, median of {args.repeat}; command: {' '.join(cmd)})")
        line("ensemble status", ms(status))
        line("ensemble status --json", ms(status_json))
        print("baselines")
        line("python -c pass (interpreter start)", ms(interp))
        line("python -c 'import ensemble.cli'", ms(imports))
        line("raw sqlite3 GROUP BY status (in process)", ms(query), f"rows: {rows}")
        print("ratios")
        line("ensemble status / interpreter start", f"{status / interp:9.2f} x")
        line("status --json / interpreter start", f"{status_json / interp:9.2f} x")
        line("import ensemble.cli / interpreter start", f"{imports / interp:9.2f} x")
        line("status - import ensemble.cli", ms(status - imports), "(open + count, roughly)")
        line("status / raw sqlite3 query", f"{status / query:9.0f} x")
        print()
        print("all samples (s):")
        for name, values in (("status", status_all), ("status --json", status_json_all),
                             ("python -c pass", interp_all), ("import ensemble.cli", imports_all)):
            print(f"  {name:<20} " + " ".join(f"{v:.4f}" for v in values))
    finally:
        os.chdir(old_cwd)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

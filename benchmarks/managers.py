"""How many concurrent managers one setup directory's SQLite serves: M managers, one store.

For each M of ``--managers`` (default 1,2,4,8,16), in a fresh directory under ``--dir``:

* ``Ensemble.create`` of ``--runs`` one-step runs of ``/bin/true`` (or ``/bin/sleep S`` with
  ``--sleep S``), ``app_is_batch_script=False``, as ``benchmarks/throughput.py`` creates them;
* M processes of ``ensemble --setup-dir D execute --block --allow-multiple --launcher local
  --cores C --quiet``, started together: each imports everything, says "ready" and waits on its
  stdin; the clock starts when all are ready and every one is told "go", and stops when the
  last has exited (``wall``);
* ``C = max(1, --slots // M)`` (``--slots`` 16 by default): every M offers the same number of
  run slots, so what changes from row to row is how many managers (writers) share the store,
  not how many runs may be in flight.  On this 2-core machine 16 slots are more than enough to
  keep both cores busy with ``/bin/true`` at any M; C may not be less than 1, so beyond M = 16
  the slots grow with M (the table shows M x C).  With ``--sleep S`` the ideal is
  ``M x C / S`` runs/s whatever M, and the store's load is what the duty cycle shows.

**How transactions are measured.**  Every write of a manager goes through
``Store.transaction()`` (``BEGIN IMMEDIATE`` ... ``COMMIT``, ``ensemble/store/core.py``; the
engine's recorder, leases, inbox, hooks).  The package is not changed: each manager process is
this script in ``--shim`` mode, which wraps ``Store.transaction`` *before* it runs
``ensemble.cli.main`` (the engine is forked from that process by the keeper, so it inherits the
wrapper), and writes one line per transaction to its own file with ``O_APPEND``, after the
commit: ``t0`` before ``BEGIN IMMEDIATE``, ``t1`` when it returned (the write lock is held),
``t2`` when ``COMMIT`` returned (released), and whether it committed.  ``CLOCK_MONOTONIC`` is
one clock for all processes on the host, so the intervals of all managers can be merged.  From
them, over ``wall``:

* commits/s: committed transactions / wall (rolled-back ones are counted apart);
* lock wait: ``t1 - t0``, the time in ``BEGIN IMMEDIATE``, i.e. in SQLite's busy handler
  (``busy_timeout``: it sleeps 1, 2, 5, 10, 15, 20, 25, ... ms between retries, so a wait
  that meets a held lock costs at least 1 ms and may outlast the holder); "wait share" is the
  total over all managers / (M x wall), "contended" the transactions that waited >= 0.5 ms
  (an uncontended ``BEGIN IMMEDIATE`` takes tens of microseconds);
* duty cycle: the union of the ``[t1, t2]`` intervals of all managers / wall, the fraction of
  time the single write lock was held (1.0 = the writer is saturated).  As only one
  connection can hold it, the intervals should not overlap; "overlap" is (sum - union) / sum,
  a check of the method: a holder descheduled between releasing the lock in ``COMMIT`` and
  reading the clock, or running an automatic WAL checkpoint in its ``COMMIT`` (which other
  writers do not wait for), stretches its interval over the next holder's; the union does not
  count that twice (the sum, an upper bound, is in the JSON as ``duty_sum``).  Being descheduled
  *while* holding the lock (2 cores, M managers and their steps) is counted: that is real.

The wrapper costs a clock read and one small ``write`` per transaction, outside the lock;
``--plain`` runs the same managers unwrapped (wall and runs/s only) to show what it costs.

Afterwards the database is checked with plain ``sqlite3``: every run succeeded, has exactly one
attempt and it succeeded, no attempt is open, no run stays claimed, every manager exited 0 or 5
(a manager that finds nothing left to claim while its peers still run the last runs ends with 5,
"runs still queued": counted and printed, not a failure here).
The store's growth per run (attempts, events, run updates: used pages after a checkpoint, minus
those after create, over N) and the share of runs each manager ran are printed too.  Ratios are
against M = 1 measured in the same invocation.

    python benchmarks/managers.py [--managers 1,2,4,8,16] [--runs 4000] [--repeat 3] [--dir DIR] [--sleep S]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from exactly_once import broken_promises

CONTENDED_S = 0.0005


# -- shim mode: one manager, its transactions timed ------------------------------------------------
def install_timer(log: str) -> None:
    """Wrap ``Store.transaction`` so each transaction appends ``t0 t1 t2 committed`` to ``log``."""
    from ensemble.store.core import Store

    original, fd, now = Store.transaction, os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), time.monotonic

    @contextmanager
    def transaction(self: Store):
        t0, t1 = now(), float("nan")
        try:
            with original(self):
                t1 = now()
                yield
        except BaseException:
            os.write(fd, f"{t0:.7f} {t1:.7f} {now():.7f} 0\n".encode())
            raise
        os.write(fd, f"{t0:.7f} {t1:.7f} {now():.7f} 1\n".encode())

    Store.transaction = transaction


def shim(log: str | None, argv: list[str]) -> int:
    """Import, (time), say ready, wait for go, then be ``ensemble <argv>``."""
    from ensemble.cli import main

    if log:
        install_timer(log)
    print("ready", flush=True)
    sys.stdin.readline()
    return main(argv)


# -- one measurement -------------------------------------------------------------------------------
def create(work: Path, runs: int, sleep: float) -> Path:
    from ensemble import Ensemble, Run

    os.chdir(work)
    app, args = ("/bin/sleep", [str(sleep)]) if sleep else ("/bin/true", None)
    made = (Run({"x": i}, args=args) if args else Run({"x": i}) for i in range(runs))
    Ensemble.create(application=app, runs=made, app_is_batch_script=False, setup_dir="setup").close()
    return work / "setup"


def used_bytes(db: Path) -> int:
    """Bytes of the database's used pages, after a checkpoint folds the WAL in."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages, free, size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size"))
    conn.close()
    return (pages - free) * size


def start_managers(setup: Path, m: int, cores: int, logs: Path, plain: bool) -> list[subprocess.Popen]:
    procs = []
    for i in range(m):
        timing = [] if plain else ["--shim-log", str(logs / f"txn-{i}.log")]
        cmd = [sys.executable, os.path.abspath(__file__), *timing, "--shim", "--setup-dir", str(setup), "execute",
               "--block", "--allow-multiple", "--launcher", "local", "--cores", str(cores), "--quiet"]
        with open(logs / f"manager-{i}.out", "wb") as out:
            procs.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out))
    for p in procs:
        if p.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"a manager did not start: see {logs}")
    return procs


def run_managers(procs: list[subprocess.Popen]) -> tuple[float, list[int]]:
    start = time.perf_counter()
    for p in procs:
        p.stdin.write(b"go\n")
        p.stdin.close()
    codes = [p.wait() for p in procs]
    return time.perf_counter() - start, codes


def transactions(logs: Path) -> list[tuple[float, float, float, int]]:
    lines = (line.split() for path in logs.glob("txn-*.log") for line in path.read_text().splitlines())
    return [(float(t0), float(t1), float(t2), int(ok)) for t0, t1, t2, ok in lines]


def union_length(spans: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(spans):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def lock_figures(rows: list[tuple[float, float, float, int]], wall: float, m: int) -> dict[str, Any]:
    got = [r for r in rows if r[1] == r[1]]  # not NaN: BEGIN IMMEDIATE returned
    waits, held = sorted(r[1] - r[0] for r in got), [(r[1], r[2]) for r in got]
    busy, union, commits = sum(b - a for a, b in held), union_length(held), sum(r[3] for r in rows)
    return {"commits": commits, "rollbacks": len(rows) - commits, "commits_s": commits / wall,
            "duty": union / wall, "duty_sum": busy / wall, "overlap": (busy - union) / busy if busy else 0.0,
            "wait_share": sum(waits) / (m * wall), "wait_mean_ms": 1e3 * statistics.fmean(waits),
            "wait_p99_ms": 1e3 * waits[int(0.99 * (len(waits) - 1))], "wait_max_ms": 1e3 * waits[-1],
            "contended": sum(w >= CONTENDED_S for w in waits) / len(waits),
            "held_mean_ms": 1e3 * busy / len(held)}


def check(db: Path, runs: int, codes: list[int]) -> dict[str, Any]:
    """What the store says happened; ``problems`` lists every broken promise."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    shares = [r[0] for r in conn.execute("SELECT COUNT(*) FROM attempts GROUP BY manager")]
    events = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    conn.close()
    problems = broken_promises(db, runs)
    if set(codes) - {0, 5}:
        problems.append(f"manager exit codes {sorted(set(codes))}")
    return {"problems": problems, "exit5": codes.count(5), "share_min": min(shares, default=0),
            "share_max": max(shares, default=0), "events": events}


def measure(base: Path, m: int, args: argparse.Namespace) -> dict[str, Any]:
    """One row: M managers over a fresh ensemble of ``args.runs`` runs."""
    work = Path(tempfile.mkdtemp(prefix=f"ensemble-managers-{m}-", dir=base))
    cwd, cores = os.getcwd(), max(1, args.slots // m)
    try:
        setup, logs = create(work, args.runs, args.sleep), work / "logs"
        db, before = setup / "ensemble.db", used_bytes(setup / "ensemble.db")
        logs.mkdir()
        wall, codes = run_managers(start_managers(setup, m, cores, logs, args.plain))
        row = {"m": m, "cores": cores, "wall_s": wall, "runs_s": args.runs / wall, **check(db, args.runs, codes),
               "bytes_per_run": (used_bytes(db) - before) / args.runs}
        if not args.plain:
            row.update(lock_figures(transactions(logs), wall, m))
        return row
    finally:
        os.chdir(cwd)
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


# -- report ----------------------------------------------------------------------------------------
def print_table(rows: list[dict[str, Any]], plain: bool) -> None:
    head = f"{'M':>3} {'MxC':>4} {'wall s':>7} {'runs/s':>7} {'B/run':>6} {'share min-max':>14}"
    if not plain:
        head += (f" {'commits':>7} {'comm/s':>7} {'/run':>5} {'duty':>6} {'overlap':>7} {'wait':>6} "
                 f"{'w mean':>7} {'w p99':>7} {'w max':>7} {'contnd':>6} {'held':>6}")
    print(head)
    for r in rows:
        line = (f"{r['m']:>3} {r['m'] * r['cores']:>4} {r['wall_s']:>7.2f} {r['runs_s']:>7.0f} "
                f"{r['bytes_per_run']:>6.0f} {r['share_min']:>6}-{r['share_max']:<7}")
        if not plain:
            line += (f" {r['commits']:>7} {r['commits_s']:>7.0f} {r['commits'] / (r['runs_s'] * r['wall_s']):>5.2f} "
                     f"{r['duty']:>6.1%} {r['overlap']:>7.2%} {r['wait_share']:>6.1%} {r['wait_mean_ms']:>5.2f}ms "
                     f"{r['wait_p99_ms']:>5.1f}ms {r['wait_max_ms']:>5.0f}ms {r['contended']:>6.1%} "
                     f"{r['held_mean_ms']:>4.2f}ms")
        print(line)
    print("MxC: run slots; share: runs per manager; /run: commits per run; duty: write lock held / wall (union);\n"
          "  wait: time in BEGIN IMMEDIATE / (M x wall), its mean, p99, max; contnd: transactions that waited >= 0.5 ms;\n"
          "  held: mean time a transaction holds the lock")
    base = rows[0]
    print(f"ratios against M = {base['m']} (same invocation):")
    for r in rows[1:]:
        extra = "" if plain else (f", commits/s {r['commits_s'] / base['commits_s']:.2f}x, "
                                  f"duty {r['duty'] / base['duty']:.2f}x")
        print(f"  M = {r['m']:>2}: runs/s {r['runs_s'] / base['runs_s']:.2f}x{extra}")
    for problem in (f"M = {r['m']}: {p}" for r in rows for p in r["problems"]):
        print(f"CHECK FAILED at {problem}")
    if not any(r["problems"] for r in rows):
        print("check: every run succeeded with exactly one attempt, none ran twice, none left open or claimed")
    print("managers that exited 5 (ran out of runs to claim while peers' runs were still queued): "
          + ", ".join(f"{r['exit5']} of {r['m']}" for r in rows))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--managers", default="1,2,4,8,16", help="comma-separated M (default 1,2,4,8,16)")
    parser.add_argument("--runs", type=int, default=4000, help="runs per measurement (default 4000)")
    parser.add_argument("--slots", type=int, default=16, help="run slots shared by the M managers (default 16)")
    parser.add_argument("--sleep", type=float, default=0.0, help="runs sleep this many seconds (default: /bin/true)")
    parser.add_argument("--dir", default=".", help="where the temporary directories go (default: .)")
    parser.add_argument("--plain", action="store_true", help="managers without the transaction timer")
    parser.add_argument("--repeat", type=int, default=1, help="measure every M this many times; the median row")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--json-out", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--shim", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--shim-log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shim is not None:
        return shim(args.shim_log, args.shim)
    counts = [int(m) for m in args.managers.split(",")]
    if min(args.runs, args.slots, args.repeat, *counts) < 1:
        parser.error("--runs, --slots, --repeat and every M must be >= 1")
    from ensemble.store import filesystem_type

    base = Path(args.dir).resolve()
    kind = f"/bin/sleep {args.sleep}" if args.sleep else "/bin/true"
    print(f"managers benchmark: {args.runs:,} runs of {kind}, {args.slots} slots, {base} ({filesystem_type(base) or '?'}), "
          f"{len(os.sched_getaffinity(0))} cores, SQLite {sqlite3.sqlite_version}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load {os.getloadavg()[0]:.2f}")
    samples: dict[int, list[dict[str, Any]]] = {m: [] for m in counts}
    for _ in range(args.repeat):  # every M once per round: a burst of load elsewhere hits one sample, not one M
        for m in counts:
            samples[m].append(measure(base, m, args))
            print(f"  M = {m}: {samples[m][-1]['wall_s']:.2f} s", file=sys.stderr, flush=True)
    rows = [sorted(got, key=lambda r: r["runs_s"])[len(got) // 2] for got in samples.values()]
    for row in rows:
        row["problems"] = [p for r in samples[row["m"]] for p in r["problems"]]
    print_table(rows, args.plain)
    if args.repeat > 1:
        print(f"the median row of {args.repeat} by runs/s; all runs/s: " + "; ".join(
            f"M={m} " + " ".join(f"{r['runs_s']:.0f}" for r in got) for m, got in samples.items()))
    if args.json_out:
        args.json_out.write_text(json.dumps(samples, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

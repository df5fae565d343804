#!/usr/bin/env python
"""Benchmark: a million-run study, from create to DataFrame, against raw sqlite3 on the same rows.

Each measurement runs in a fresh interpreter (this script with ``--phase``), so each reports its
own peak resident memory (``ru_maxrss``, interpreter and imports included):

* ``Ensemble.create`` of N one-step runs (3-key sample ``{"x": i, "y": i * 0.5, "name":
  "case<i>"}``, application ``/bin/true``, ``app_is_batch_script=False``), the runs given as a
  generator; baseline: a raw ``sqlite3`` ``executemany`` of the same rows (sample JSON, steps,
  run directory) into the same schema, in one transaction;
* the study is then marked finished with raw SQL, not timed: 90 % of the runs succeeded with a
  result ``{"energy": ..., "ok": true}``, 10 % failed, each with one attempt;
* ``as_dataframe()``; baseline: a raw ``SELECT`` of the runs' columns and of the attempts'
  per-run totals (``fetchall``, nothing decoded); ``attempts_dataframe()``; ``write_csv``,
  ``write_json`` and ``write_parquet`` (if pyarrow is installed) to files;
* ``ensemble status`` as a subprocess (median of ``--repeat``); baseline: ``python -c pass``;
* ``requeue_runs`` of min(N, 100,000) completed runs; baseline: one raw ``UPDATE``.

Targets (for N = 1,000,000; per-run ones scaled to N): create <= 30 s with peak memory under
500 MB, ``as_dataframe`` <= 10 s, ``status`` < 0.3 s, ``requeue`` of 100,000 runs < 5 s.  They
are printed with PASS or MISS; the exit status is 0 whatever the figures.

Usage::

    python benchmarks/scale.py                   # N = 1,000,000
    python benchmarks/scale.py --runs 100000     # what CI runs
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SETUP = "study.ens"
REQUEUE_RUNS = 100_000
STEPS = '[{"args":["/bin/true"],"tasks":1,"cores_per_task":1,"gpus_per_task":0,"timeout":0.0,' \
        '"batch_script":false,"cwd":"."}]'


# -- phases: each runs in its own interpreter and prints {"seconds": ..., "rss_mb": ..., ...} ----------
def sample(i: int) -> dict[str, Any]:
    return {"x": i, "y": i * 0.5, "name": f"case{i}"}


def phase_create(runs: int) -> dict[str, Any]:
    from ensemble import Ensemble, Run

    start = time.perf_counter()
    ens = Ensemble.create(application="/bin/true", runs=(Run(sample(i)) for i in range(runs)), setup_dir=SETUP,
                          app_is_batch_script=False)
    seconds = time.perf_counter() - start
    assert ens.count_by_status() == runs
    ens.close()
    return {"seconds": seconds}


def phase_raw_insert(runs: int) -> dict[str, Any]:
    from ensemble.store.schema import SCHEMA

    path = Path("raw.db")
    path.unlink(missing_ok=True)
    root = os.getcwd()
    start = time.perf_counter()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO stepsets(id, steps) VALUES (1, ?)", (STEPS,))
    rows = ((i + 1, json.dumps(sample(i), separators=(",", ":")), 1, f"{root}/runs/{i + 1}") for i in range(runs))
    conn.executemany("INSERT INTO runs(id, sample, stepset, run_dir) VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()
    seconds = time.perf_counter() - start
    path.unlink()
    return {"seconds": seconds}


def phase_finish(runs: int) -> dict[str, Any]:
    """Mark the study finished (not a measurement): results, statuses, one attempt per run."""
    conn = sqlite3.connect(f"{SETUP}/ensemble.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE runs SET status = CASE WHEN id % 10 = 0 THEN 2 ELSE 1 END, step = 1, "
                 "result = CASE WHEN id % 10 = 0 THEN NULL ELSE json_object('energy', id * 0.25, 'ok', json('true')) "
                 "END, message = CASE WHEN id % 10 = 0 THEN 'exit 1' END")
    conn.execute("INSERT INTO attempts(run_id, step, attempt, manager, host, pid, start, end, exit_code, outcome, "
                 "command, placement) SELECT id, 0, 0, 'vm:1:bench', 'node' || (id % 4), 1000 + id % 30000, "
                 "1.7e9 + id * 0.01, 1.7e9 + id * 0.01 + 0.5, CASE WHEN id % 10 = 0 THEN 1 ELSE 0 END, "
                 "CASE WHEN id % 10 = 0 THEN 'failure' ELSE 'success' END, '[\"/bin/true\"]', "
                 "'[{\"node\":\"node0\",\"cores\":[0],\"gpus\":[]}]' FROM runs")
    conn.execute("COMMIT")
    conn.close()
    return {"seconds": 0.0}


def phase_raw_select(runs: int) -> dict[str, Any]:
    start = time.perf_counter()
    conn = sqlite3.connect(f"file:{SETUP}/ensemble.db?mode=ro", uri=True)
    rows = conn.execute("SELECT id, sample, result, status, restarts, step, run_dir, message FROM runs "
                        "ORDER BY id").fetchall()
    totals = conn.execute("SELECT run_id, MIN(start), MAX(end), COUNT(*) FROM attempts GROUP BY run_id").fetchall()
    conn.close()
    return {"seconds": time.perf_counter() - start, "rows": len(rows), "totals": len(totals)}


def _timed_on_ensemble(call: Callable[[Any], Any]) -> dict[str, Any]:
    from ensemble import Ensemble

    with Ensemble(SETUP) as ens:
        start = time.perf_counter()
        value = call(ens)
        return {"seconds": time.perf_counter() - start, "value": value}


def phase_dataframe(runs: int) -> dict[str, Any]:
    import pandas  # noqa: F401  (imported before the clock starts, as a user's session has it)

    def frame(ens: Any) -> Any:
        df = ens.as_dataframe()
        return {"shape": list(df.shape), "dtypes": {k: str(v) for k, v in df.dtypes.items()}}

    return _timed_on_ensemble(frame)


def phase_attempts_dataframe(runs: int) -> dict[str, Any]:
    import pandas  # noqa: F401

    return _timed_on_ensemble(lambda ens: list(ens.attempts_dataframe().shape))


def _write_text(ens: Any, method: str, name: str) -> int:
    with open(name, "w", encoding="utf-8", newline="") as stream:
        getattr(ens, method)(stream)
    return os.path.getsize(name)


def phase_write_csv(runs: int) -> dict[str, Any]:
    return _timed_on_ensemble(lambda ens: _write_text(ens, "write_csv", "summary.csv"))


def phase_write_json(runs: int) -> dict[str, Any]:
    return _timed_on_ensemble(lambda ens: _write_text(ens, "write_json", "summary.json"))


def _write_parquet(ens: Any) -> int:
    ens.write_parquet("summary.parquet")
    return os.path.getsize("summary.parquet")


def phase_write_parquet(runs: int) -> dict[str, Any]:
    import pyarrow  # noqa: F401

    return _timed_on_ensemble(_write_parquet)


def phase_requeue(runs: int) -> dict[str, Any]:
    return _timed_on_ensemble(lambda ens: ens.requeue_runs(range(1, min(runs, REQUEUE_RUNS) + 1)))


def phase_raw_requeue(runs: int) -> dict[str, Any]:
    shutil.copy(f"{SETUP}/ensemble.db", "copy.db")
    start = time.perf_counter()
    conn = sqlite3.connect("copy.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    changed = conn.execute("UPDATE runs SET status=0, message=NULL WHERE id BETWEEN 1 AND ? AND status IN (1,2,3,4)",
                           (min(runs, REQUEUE_RUNS),)).rowcount
    conn.execute("COMMIT")
    conn.close()
    seconds = time.perf_counter() - start
    os.unlink("copy.db")
    return {"seconds": seconds, "value": changed}


PHASES = {name[len("phase_"):]: f for name, f in globals().items() if name.startswith("phase_")}


def run_phase(name: str, runs: int, work: Path) -> dict[str, Any]:
    """Run one phase in a fresh interpreter in ``work``; return what it reported."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--phase", name, "--runs", str(runs)],
                          cwd=work, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def child(name: str, runs: int) -> int:
    result = PHASES[name](runs)
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
    return 0


# -- the report ----------------------------------------------------------------------------------------
def median_time(argv: list[str], repeat: int, cwd: Path) -> float:
    """Median wall time of ``argv`` run ``repeat`` times (after one warm-up run)."""
    subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ensemble_command() -> list[str]:
    """The ``ensemble`` console script next to this interpreter, else ``python -m ensemble``."""
    script = Path(sys.executable).parent / "ensemble"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ensemble"]


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<44}{value}{'  ' + note if note else ''}")


def verdict(label: str, value: float, target: float, unit: str) -> None:
    mark = "PASS" if value <= target else "MISS"
    line(label, f"{value:10.2f} {unit}", f"target <= {target:,.2f} {unit}: {mark}")


def measured(label: str, result: dict[str, Any], runs: int | None = None) -> None:
    per_run = f"({result['seconds'] / runs * 1e6:.1f} us/run) " if runs else ""
    line(label, f"{result['seconds']:10.2f} s", f"{per_run}peak {result['rss_mb']:.0f} MB")


def phases(runs: int, work: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every measurement in order, the study finished after create."""
    for name in ("raw_insert", "create", "finish", "raw_select", "dataframe", "attempts_dataframe", "write_csv",
                 "write_json", "write_parquet", "raw_requeue", "requeue"):
        if name == "write_parquet" and not _has_pyarrow():
            continue
        yield name, run_phase(name, runs, work)


def _has_pyarrow() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def report(runs: int, repeat: int, work: Path) -> None:
    scale = runs / 1_000_000
    requeued = min(runs, REQUEUE_RUNS)
    print(f"million-run study benchmark: {runs:,} runs")
    print(f"  date     {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"  machine  {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"  python   {platform.python_version()} ({sys.executable}), SQLite {sqlite3.sqlite_version}")
    print(f"  work dir {work}")
    print()
    got: dict[str, dict[str, Any]] = {}
    for name, result in phases(runs, work):
        got[name] = result
    cmd = ensemble_command()
    status = median_time([*cmd, "--setup-dir", SETUP, "status"], repeat, work)
    start = median_time([sys.executable, "-c", "pass"], repeat, work)
    size = (work / SETUP / "ensemble.db").stat().st_size

    print("create")
    measured("Ensemble.create (runs from a generator)", got["create"], runs)
    measured("raw sqlite3 executemany, same rows", got["raw_insert"], runs)
    line("database size", f"{size / 2**20:10.1f} MiB", f"({size / runs:.0f} B/run, finished study)")
    print("summaries")
    measured("as_dataframe()", got["dataframe"], runs)
    measured("raw SELECT runs + attempt totals", got["raw_select"], runs)
    measured("attempts_dataframe()", got["attempts_dataframe"], runs)
    for name in ("write_csv", "write_json", "write_parquet"):
        if name in got:
            measured(f"{name} ({got[name]['value'] / 2**20:.0f} MiB)", got[name], runs)
    print("control")
    line(f"ensemble status (subprocess, median of {repeat})", f"{status:10.3f} s")
    line("python -c pass (interpreter start)", f"{start:10.3f} s")
    measured(f"requeue_runs of {requeued:,} runs", got["requeue"], requeued)
    measured("raw sqlite3 UPDATE of the same runs", got["raw_requeue"], requeued)
    print("ratios")
    line("create / raw insert", f"{got['create']['seconds'] / got['raw_insert']['seconds']:10.2f} x")
    line("as_dataframe / raw SELECT", f"{got['dataframe']['seconds'] / got['raw_select']['seconds']:10.2f} x")
    line("status / interpreter start", f"{status / start:10.2f} x")
    line("requeue / raw UPDATE", f"{got['requeue']['seconds'] / got['raw_requeue']['seconds']:10.1f} x")
    print(f"targets (per-run ones scaled to {runs:,} runs)")
    verdict("create", got["create"]["seconds"], 30 * scale, "s")
    verdict("create peak memory", got["create"]["rss_mb"], 500, "MB")
    verdict("as_dataframe", got["dataframe"]["seconds"], 10 * scale, "s")
    verdict("status", status, 0.3, "s")
    verdict(f"requeue of {requeued:,} runs", got["requeue"]["seconds"], 5 * requeued / REQUEUE_RUNS, "s")
    print()
    print(f"DataFrame: {got['dataframe']['value']['shape']}, dtypes {got['dataframe']['value']['dtypes']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000, help="number of runs (default 1000000)")
    parser.add_argument("--repeat", type=int, default=5, help="status timings; the median is reported")
    parser.add_argument("--dir", help="where to make the temporary directory (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs < 1 or args.repeat < 1:
        parser.error("--runs and --repeat must be >= 1")
    if args.phase:
        return child(args.phase, args.runs)
    work = Path(tempfile.mkdtemp(prefix="ensemble-scale-", dir=args.dir))
    try:
        report(args.runs, args.repeat, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

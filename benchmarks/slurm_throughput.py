"""Runs/s of tiny runs inside one Slurm allocation: srun per run, the node-local workers, raw srun.

In one invocation, on the same machine:

* inside one ``sbatch -N <nodes> --exclusive`` job (this script started again with ``--inside``):

  - ``execute_local(launcher="srun")`` over ``--srun-runs`` runs of ``/bin/true``: one job step
    per run (rate-limited to 60 steps/s, see ``ENSEMBLE_SRUN_RATE``);
  - ``execute_local(launcher="worker")`` over ``--runs`` runs: one worker per node, started by one
    ``srun --overlap`` each, then one JSON line each way per run;
  - a raw loop of ``srun --exact -N1 -n1 -c1 true``, ``--srun-runs`` of them, keeping as many
    running at once as the allocation has CPUs (the concurrency both engine paths use);

* outside Slurm (no ``SLURM_*`` variables): ``execute_local`` (launcher ``local``) over the same
  ``--runs`` runs with ``cores=`` the allocation's CPU count, so the concurrency is the same.

Each figure is the median of ``--repeat`` repetitions (a fresh ensemble each).  Every engine
figure is end to end as a user sees it: ``execute_local(blocking=True)`` from the call
to its return (manager start, workers' start, every run's directory, log files and records),
``create`` excluded.  Run directories live under ``--dir`` (default: a temp dir in /tmp).

    SLURM_CONF=/tmp/ensemble-slurm/slurm.conf python benchmarks/slurm_throughput.py [--nodes 4]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensemble import Ensemble, Run
from ensemble.store import filesystem_type


def make_ensemble(base: Path, name: str, n: int) -> Path:
    """A fresh ensemble whose run directories are its own (``runs/`` beside ``setup``, not in the cwd)."""
    setup = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base)) / "setup"
    cwd = os.getcwd()
    os.chdir(setup.parent)
    try:
        Ensemble.create(application="/bin/true", runs=[Run({"x": i}) for i in range(n)], app_is_batch_script=False,
                        setup_dir=str(setup))
    finally:
        os.chdir(cwd)
    return setup


def engine_rate(base: Path, name: str, n: int, **options: Any) -> dict[str, Any]:
    """One fresh ensemble of n runs, executed; its rate."""
    ens = Ensemble(make_ensemble(base, name, n))
    start = time.perf_counter()
    ens.execute_local(blocking=True, **options)
    elapsed = time.perf_counter() - start
    ok = ens.count_by_status(Ensemble.RUN_SUCCESS)
    return {"runs": ok, "seconds": elapsed, "runs_per_s": ok / elapsed}


def raw_srun_rate(n: int, concurrency: int) -> dict[str, Any]:
    """``srun --exact true`` n times, ``concurrency`` at once."""
    running: list[subprocess.Popen] = []
    failed = started = 0
    start = time.perf_counter()
    while started < n or running:
        while started < n and len(running) < concurrency:
            running.append(subprocess.Popen(["srun", "--exact", "-N1", "-n1", "-c1", "--quiet", "true"],
                                            stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            started += 1
        pid, status = os.wait()
        done = next(p for p in running if p.pid == pid)
        running.remove(done)
        failed += status != 0
    elapsed = time.perf_counter() - start
    return {"runs": n - failed, "seconds": elapsed, "runs_per_s": (n - failed) / elapsed}


def median_of(repeat: int, measure: Callable[..., dict[str, Any]], *args: Any, **options: Any) -> dict[str, Any]:
    """The repetition with the median rate, with the range of rates."""
    results = sorted((measure(*args, **options) for _ in range(repeat)), key=lambda r: r["runs_per_s"])
    return {**results[len(results) // 2], "range": [results[0]["runs_per_s"], results[-1]["runs_per_s"]]}


def inside(base: Path) -> dict[str, Any]:
    """The measurements inside the allocation (this process runs as the batch job)."""
    cpus = sum(int(c.split("(x")[0]) * int(c.split("(x")[1].rstrip(")") if "(x" in c else 1)
               for c in os.environ["SLURM_JOB_CPUS_PER_NODE"].split(","))
    results = {"job_id": os.environ["SLURM_JOB_ID"], "nodes": os.environ["SLURM_JOB_NODELIST"], "cpus": cpus}
    runs, srun_runs, repeat = (int(os.environ[f"BENCH_{k}"]) for k in ("RUNS", "SRUN_RUNS", "REPEAT"))
    results["srun_per_run"] = median_of(repeat, engine_rate, base, "srun", srun_runs, launcher="srun")
    results["worker"] = median_of(repeat, engine_rate, base, "worker", runs, launcher="worker")
    results["raw_srun"] = median_of(repeat, raw_srun_rate, srun_runs, cpus)
    return results


def submit(base: Path, nodes: int, runs: int, srun_runs: int, repeat: int) -> dict[str, Any]:
    script = base / "job.sh"
    script.write_text(f"#!/bin/bash\nexec {sys.executable} {Path(__file__).resolve()} --inside {base}\n")
    script.chmod(0o755)
    out = base / "job.out"
    done = subprocess.run(["sbatch", "--wait", "-N", str(nodes), "--exclusive", "-t", "20", "-o", str(out),
                           "--export", f"ALL,BENCH_RUNS={runs},BENCH_SRUN_RUNS={srun_runs},BENCH_REPEAT={repeat}",
                           str(script)],
                          capture_output=True, text=True)
    lines = out.read_text().strip().splitlines() if out.exists() else []
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark job failed ({done.returncode}): {done.stderr.strip()} {lines[-20:]}")
    return json.loads(lines[-1])


def outside(base: Path, runs: int, cpus: int, repeat: int) -> dict[str, Any]:
    """``execute_local`` with no Slurm in sight (a child without SLURM_* variables)."""
    code = (f"import json, sys; from pathlib import Path; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            f"import slurm_throughput as b; print(json.dumps(b.median_of({repeat}, b.engine_rate, "
            f"Path({str(base)!r}), 'local', {runs}, launcher='local', cores={cpus})))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(r: dict[str, Any]) -> None:
    print(f"allocation: job {r['job_id']} on {r['nodes']}, {r['cpus']} CPUs; run directories on {r['fs']}")
    rows = [("srun per run (launcher=srun)", r["srun_per_run"]), ("node-local workers (launcher=worker)", r["worker"]),
            ("raw srun --exact true loop", r["raw_srun"]), ("execute_local outside Slurm", r["local"])]
    for label, m in rows:
        low, high = m["range"]
        print(f"  {label:40s} {m['runs']:6d} runs  {m['seconds']:7.2f} s  {m['runs_per_s']:8.1f} runs/s"
              f"  ({low:.1f}-{high:.1f})")
    w = r["worker"]["runs_per_s"]
    print(f"  worker / srun per run:   {w / r['srun_per_run']['runs_per_s']:6.1f}x  (target >= 10x)")
    print(f"  worker / raw srun loop:  {w / r['raw_srun']['runs_per_s']:6.1f}x")
    print(f"  worker / execute_local:  {w / r['local']['runs_per_s']:6.2f}x  (target >= 0.7x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs for the worker and local figures (2000)")
    parser.add_argument("--srun-runs", type=int, default=400, help="runs for the two srun figures (400)")
    parser.add_argument("--nodes", type=int, default=4, help="nodes of the allocation (4)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per figure; medians reported (3)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temp dir goes (default /tmp)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--inside", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args.inside)))
        return
    base = Path(tempfile.mkdtemp(prefix="ensemble-slurm-bench-", dir=args.dir))
    try:
        results = submit(base, args.nodes, args.runs, args.srun_runs, args.repeat)
        results["local"] = outside(base, args.runs, results["cpus"], args.repeat)
        results["fs"] = filesystem_type(base) or "?"
        print(json.dumps(results)) if args.json else report(results)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Simulated scale: one big allocation against automatic allocations, on a 32-node test Slurm.

The machine has 2 cores; the point is a Slurm that *claims* many more (``--nodes`` slurmd daemons
of ``--cpus`` CPUs each, default 32 x 4 = 128), so the managers, workers and slurmctld are loaded as
on a larger cluster while every run is ``/bin/true``.  In one invocation:

* the testbed is started if it is not running (``tests/testbed/slurm.sh start`` with
  ``ENSEMBLE_SLURM_STATE=--state`` and ``ENSEMBLE_SLURM_PORT=--port``: its own slurmctld, slurmds and
  munged beside the default testbed), and stopped at the end unless ``--keep``;
* for each of ``--repeat`` rounds, two fresh ensembles of ``--runs`` one-step runs of ``/bin/true``
  (``Ensemble.create`` of ``Run`` objects, ``app_is_batch_script=False``, not timed) are executed:

  (a) baseline: ``execute_alloc(nodes=NODES, launcher="worker")``, one allocation of all nodes
      with one node-local worker per node;
  (b) automatic allocations: ``execute_alloc(nodes=NODES // K, launcher="worker",
      max_allocations=K)`` (``--allocations K``, default 4), ``ENSEMBLE_POOL_EVERY=5``;

  both with ``log_layout="combined"`` (one log file per attempt instead of two: one file
  creation less per run on the disk).  Each is timed from just before ``execute_alloc`` (the
  submission included) until every run has ended *and* none of its jobs is left in ``squeue``
  (polled every 0.5 s); "last run" is the end of the last attempt, from the store.

Printed per case: runs/s, the allocations the pool submitted (the ledger
``batch/pool-1.json``), those that ran attempts, their Slurm states, and the exactly-once check
(every run succeeded, one attempt each, no open attempt, no claimed run); then (b)/(a), measured
in the same invocation.  A case with a problem keeps its directory (printed) whatever ``--keep-dirs``.

    python benchmarks/simscale.py [--nodes 32] [--cpus 4] [--runs 100000] [--allocations 4]
                                  [--dir /tmp] [--repeat 1] [--keep] [--keep-dirs]
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
from pathlib import Path
from typing import Any

from exactly_once import broken_promises

from ensemble import Ensemble, Run
from ensemble.store import filesystem_type

TESTBED = Path(__file__).resolve().parent.parent / "tests" / "testbed" / "slurm.sh"
DEFAULT_STATE = "/tmp/ensemble-slurm"
POLL_S = 0.5


def testbed_env(state: str, port: int) -> dict[str, str]:
    """The environment of ``slurm.sh`` for this testbed."""
    return {**os.environ, "ENSEMBLE_SLURM_STATE": state, "ENSEMBLE_SLURM_PORT": str(port)}


def idle_nodes() -> int:
    """Nodes sinfo lists as idle on the testbed SLURM_CONF names (0 if it does not answer)."""
    done = subprocess.run(["sinfo", "-h", "-N", "-t", "idle", "-o", "%N"], capture_output=True, text=True, timeout=30)
    return len(done.stdout.split()) if done.returncode == 0 else 0


def start_testbed(args: argparse.Namespace) -> bool:
    """Start the testbed unless its slurmctld runs; whether this call started it."""
    pid = Path(args.state, "run", "slurmctld.pid")
    if pid.exists() and Path(f"/proc/{pid.read_text().strip()}").exists():
        return False
    subprocess.run([str(TESTBED), "start", str(args.nodes), str(args.cpus)], env=testbed_env(args.state, args.port),
                   check=True)
    return True


def stop_testbed(args: argparse.Namespace) -> None:
    subprocess.run([str(TESTBED), "stop"], env=testbed_env(args.state, args.port), check=False)


def queued_jobs() -> set[str]:
    """Ids of every job in this testbed's squeue (pending, running, completing)."""
    done = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"squeue failed: {done.stderr.strip()}")
    return set(done.stdout.split())


def make_ensemble(base: Path, name: str, n: int) -> Path:
    """A fresh ensemble of n runs of /bin/true, run directories beside its setup directory."""
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    cwd = os.getcwd()
    os.chdir(work)
    try:
        Ensemble.create(application="/bin/true", runs=(Run({"x": i}) for i in range(n)), app_is_batch_script=False,
                        setup_dir=str(work / "setup"))
    finally:
        os.chdir(cwd)
    return work / "setup"


def ledger_jobs(setup: Path) -> tuple[list[str], list[str]]:
    """The pool's submitted and cancelled job ids (empty without a pool)."""
    path = setup / "batch" / "pool-1.json"
    if not path.exists():
        return [], []
    record = json.loads(path.read_text(encoding="utf-8"))
    return record["jobs"], record["cancelled"]


def unfinished(db: Path) -> int:
    """Runs still queued or running (a run in flight is queued and claimed), read-only."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM runs WHERE status=?", (int(Ensemble.RUN_QUEUED),)).fetchone()[0]
    finally:
        conn.close()


def wait_done(setup: Path, first_job: str, started: float, limit_s: float) -> float:
    """Poll until no run is left and none of the case's jobs is in squeue; the time that was seen.

    squeue is read before the ledger: a job submitted after that squeue was submitted by a job
    that squeue still listed.  Jobs all gone with runs left (lost runs) ends the wait after 10 s."""
    gone_since = None
    while True:
        now, active = time.time(), queued_jobs()
        if not {first_job, *ledger_jobs(setup)[0]} & active:
            gone_since = gone_since or now
            if unfinished(setup / "ensemble.db") == 0 or now - gone_since > 10:
                return gone_since
        else:
            gone_since = None
        if now - started > limit_s:
            raise TimeoutError(f"still running after {limit_s:.0f} s: {setup}")
        time.sleep(POLL_S)


def job_states(jobs: list[str]) -> dict[str, str]:
    """``JobState`` and ``ExitCode`` of each job as scontrol still remembers it (MinJobAge)."""
    states = {}
    for job in jobs:
        out = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        states[job] = f"{fields.get('JobState', '?')}:{fields.get('ExitCode', '?')}"
    return states


def check(db: Path, runs: int) -> dict[str, Any]:
    """Exactly-once, and where the attempts ran: what the store says happened."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    ok = one(f"SELECT COUNT(*) FROM runs WHERE status={int(Ensemble.RUN_SUCCESS)}")
    attempts = one("SELECT COUNT(*) FROM attempts")
    outcomes = dict(conn.execute("SELECT outcome, COUNT(*) FROM attempts GROUP BY outcome").fetchall())
    per_job = dict(conn.execute(
        "SELECT s.job, COUNT(*) FROM attempts a LEFT JOIN (SELECT json_extract(detail, '$.manager') AS manager,"
        " json_extract(detail, '$.job_id') AS job FROM events WHERE kind='manager_started') s"
        " ON a.manager = s.manager GROUP BY s.job").fetchall())
    last_end = one("SELECT MAX(end) FROM attempts")
    conn.close()
    return {"succeeded": ok, "attempts": attempts, "outcomes": outcomes, "per_job": per_job, "last_end": last_end,
            "problems": broken_promises(db, runs)}


def measure(base: Path, label: str, args: argparse.Namespace, **alloc: Any) -> dict[str, Any]:
    """One case: a fresh ensemble executed by ``execute_alloc(**alloc)``, timed to an empty squeue."""
    setup = make_ensemble(base, label, args.runs)
    ens = Ensemble(setup)
    started = time.time()
    first = ens.execute_alloc(timeout=args.timeout, launcher="worker", log_layout="combined", name=f"sim-{label}",
                              **alloc)
    ended = wait_done(setup, first, started, args.timeout * 60 + 120)
    ens.close()
    submitted, cancelled = ledger_jobs(setup)
    jobs = submitted or [first]
    result = {"case": label, "setup": str(setup), "seconds": ended - started, **check(setup / "ensemble.db", args.runs),
              "submitted": len(jobs), "cancelled": len(cancelled), "states": job_states(jobs)}
    result["runs_per_s"] = result["succeeded"] / result["seconds"]
    result["last_run_s"] = (result["last_end"] or started) - started
    result["ran_attempts"] = len(result["per_job"])
    if queued_jobs() & set(jobs):
        result["problems"].append(f"jobs left in squeue: {sorted(queued_jobs() & set(jobs))}")
    if result["problems"] or args.keep_dirs:
        print(f"  kept {setup.parent}", flush=True)
    else:
        shutil.rmtree(setup.parent, ignore_errors=True)
    return result


def show(r: dict[str, Any]) -> None:
    print(f"  {r['case']:9s} {r['succeeded']:7d} runs  {r['seconds']:8.1f} s  {r['runs_per_s']:7.1f} runs/s  "
          f"(last run ended at {r['last_run_s']:.1f} s)", flush=True)
    print(f"            allocations: {r['submitted']} submitted, {r['cancelled']} cancelled, {r['ran_attempts']} ran "
          f"attempts (attempts per job {r['per_job']}); Slurm JobState:ExitCode {r['states']}")
    verdict = "every run succeeded exactly once" if not r["problems"] else "PROBLEMS: " + "; ".join(r["problems"])
    print(f"            attempts {r['attempts']} {r['outcomes']}: {verdict}", flush=True)


def round_of(base: Path, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a) then (b), on the same testbed, one after the other."""
    k = args.allocations
    a = measure(base, "one", args, nodes=args.nodes)
    show(a)
    b = measure(base, f"pool{k}", args, nodes=args.nodes // k, max_allocations=k)
    show(b)
    print(f"  ratio (b)/(a): {b['runs_per_s'] / a['runs_per_s']:.3f}", flush=True)
    return a, b


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=32, help="slurmd daemons, and nodes of allocation (a) (32)")
    parser.add_argument("--cpus", type=int, default=4, help="CPUs each node claims (4)")
    parser.add_argument("--runs", type=int, default=100000, help="runs of /bin/true per case (100000)")
    parser.add_argument("--allocations", type=int, default=4, help="K: max_allocations of case (b) (4)")
    parser.add_argument("--timeout", type=int, default=60, help="allocations' time limit, minutes (60)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (a) then (b) (1)")
    parser.add_argument("--state", default="/tmp/ensemble-slurm-sim", help="testbed state dir")
    parser.add_argument("--port", type=int, default=7817, help="testbed port base (7817)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the ensembles go (/tmp)")
    parser.add_argument("--keep", action="store_true", help="leave the testbed running")
    parser.add_argument("--keep-dirs", action="store_true", help="keep every ensemble's directory")
    args = parser.parse_args()
    if os.path.realpath(args.state) == DEFAULT_STATE or args.port == 6817:
        parser.error("--state/--port: this benchmark never uses the default testbed")
    if args.nodes % args.allocations:
        parser.error(f"--nodes {args.nodes} is not a multiple of --allocations {args.allocations}")
    return args


def main() -> None:
    args = parse()
    os.environ["SLURM_CONF"] = str(Path(args.state, "slurm.conf"))
    os.environ["ENSEMBLE_POOL_EVERY"] = "5"
    started_here = start_testbed(args)
    try:
        if queued_jobs() or idle_nodes() < args.nodes:
            sys.exit(f"testbed {args.state} is busy or too small: squeue {sorted(queued_jobs())}, "
                     f"{idle_nodes()} idle nodes")
        base = Path(tempfile.mkdtemp(prefix="ensemble-simscale-", dir=args.dir))
        print(f"testbed {args.state} ({'started' if started_here else 'already running'}): {args.nodes} nodes x "
              f"{args.cpus} CPUs on {os.cpu_count()} cores; {args.runs} runs per case under {base} "
              f"({filesystem_type(base) or '?'}), log_layout=combined, ENSEMBLE_POOL_EVERY=5", flush=True)
        rounds = [round_of(base, args) for _ in range(args.repeat)]
        if args.repeat > 1:
            ratios = [b["runs_per_s"] / a["runs_per_s"] for a, b in rounds]
            print(f"ratios (b)/(a): {[round(r, 3) for r in ratios]}, median {statistics.median(ratios):.3f}")
        if not args.keep_dirs and not any(p for r in rounds for c in r for p in c["problems"]):
            shutil.rmtree(base, ignore_errors=True)
    finally:
        if not args.keep:
            stop_testbed(args)


if __name__ == "__main__":
    main()

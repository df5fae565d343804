"""Automatic allocations and job arrays without a batch system: the backlog rule, the pool's
ledger under its lock, Flux's exact command lines, the scripts, the run-range manager, and bad
input refused before anything is written.

No Flux is installed here: ``flux`` is a fake script on PATH that records its argv and prints
what real Flux prints (``flux jobs -o '{id.f58} {state}'``); the Slurm side runs against the real
testbed in tests/test_slurm_pool.py.
"""
from __future__ import annotations

import multiprocessing
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from conftest import snapshot
from engine_helpers import SETUP, attempts_by_run, create, execute, run, sh, statuses

from ensemble.alloc import arrays
from ensemble.cli import build_parser, main
from ensemble.errors import SpecError, SpecTypeError
from ensemble.providers import pool
from ensemble.providers.batchqueue import BatchQueue, FluxQueue, JobState
from ensemble.status import RunStatus


@pytest.mark.parametrize("backlog, running, pending, capacity, limit, delta", [
    (0, 2, 3, 8, 5, -3),     # nothing waits: cancel every pending one
    (100, 0, 0, 8, 3, 3),    # fills three: submit up to the limit
    (100, 2, 0, 8, 3, 1),    # two run: one more
    (100, 3, 0, 8, 3, 0),    # at the limit
    (5, 1, 0, 8, 3, 0),      # would not fill one while one runs: none
    (5, 0, 0, 8, 3, 1),      # none runs: one, however small the backlog
    (5, 0, 1, 8, 3, 0),      # ... which is already pending
    (16, 1, 2, 8, 4, 0),     # two fill two
    (10, 1, 3, 8, 4, -2),    # backlog shrank: cancel the newest two
])
def test_plan_follows_the_rule(backlog, running, pending, capacity, limit, delta):
    assert pool.plan(backlog, running, pending, capacity, limit) == delta


class MemoryQueue(BatchQueue):
    """A queue that keeps its jobs in a file: the rule's bookkeeping, not a stand-in for Slurm."""

    def __init__(self, path: Path, start_running: int = 0) -> None:
        self.path, self.start_running = path, start_running

    def _jobs(self) -> dict[str, str]:
        lines = self.path.read_text().split() if self.path.exists() else []
        return dict(line.split("=") for line in lines)

    def _save(self, jobs: dict[str, str]) -> None:
        self.path.write_text("\n".join(f"{k}={v}" for k, v in jobs.items()))

    def submit(self, script: Path) -> str:
        jobs = self._jobs()
        job = str(len(jobs) + 1)
        jobs[job] = "running" if len(jobs) < self.start_running else "pending"
        self._save(jobs)
        return job

    def active(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        jobs = self._jobs()
        return {j: JobState(jobs[j]) for j in job_ids if jobs.get(j) in ("pending", "running")}

    def cancel(self, job_id: str) -> None:
        jobs = self._jobs()
        jobs[job_id] = "cancelled"
        self._save(jobs)

    def current_job(self, env=None) -> str | None:
        return None

    def cores_per_node(self, partition=None) -> int | None:
        return 8


def new_ledger(tmp_path: Path, limit: int = 3, capacity: int = 8) -> Path:
    path = pool.ledger_path(tmp_path, 1)
    pool.write(path, pool.PoolRecord(pool="pool-1", script="/s", max_allocations=limit, capacity=capacity))
    return path


def test_tend_submits_cancels_and_keeps_the_ledger(tmp_path):
    ledger, queue = new_ledger(tmp_path), MemoryQueue(tmp_path / "q", start_running=1)
    done = pool.tend(ledger, queue, lambda: 100)
    assert done.submitted == ["1", "2", "3"] and pool.read(ledger).jobs == ["1", "2", "3"]
    assert pool.tend(ledger, queue, lambda: 100).submitted == []
    done = pool.tend(ledger, queue, lambda: 0)
    assert done.cancelled == ["2", "3"] and (done.running, done.pending) == (1, 2)
    assert pool.read(ledger).cancelled == ["2", "3"]
    # The running one ends with work left (its own job not counted): one more is submitted.
    assert pool.tend(ledger, queue, lambda: 3, ending="1").submitted == ["4"]
    assert pool.tend(ledger, queue, lambda: 3, stopped=True).cancelled == ["4"]


def _tend_in_process(ledger: str, queue_file: str) -> list[str]:
    return pool.tend(Path(ledger), MemoryQueue(Path(queue_file)), lambda: 1000).submitted


def test_tenders_at_once_never_exceed_the_limit(tmp_path):
    ledger = new_ledger(tmp_path, limit=4)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as workers:
        submitted = workers.starmap(_tend_in_process, [(str(ledger), str(tmp_path / "q"))] * 16)
    assert sorted(j for s in submitted for j in s) == ["1", "2", "3", "4"]
    assert pool.read(ledger).jobs == ["1", "2", "3", "4"]


def fake_flux(tmp_path: Path, monkeypatch, jobs_output: str) -> Path:
    """A ``flux`` on PATH that logs each argv and answers ``batch`` and ``jobs`` as Flux does."""
    log = tmp_path / "flux.argv"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "flux").write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$*" in *batch*) echo fBxyz ;; *jobs*) printf '{jobs_output}' ;; *resource*) printf '2 16\\n1 8\\n' ;; esac
""")
    (bin_dir / "flux").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return log


def test_flux_queue_command_lines_outside_and_inside_a_batch_job(tmp_path, monkeypatch):
    log = fake_flux(tmp_path, monkeypatch, "fA1 RUN\\nfA2 SCHED\\nfA3 CLEANUP\\nfOther RUN\\n")
    outside = FluxQueue(env={})
    assert outside.submit(Path("/s/ensemble-1.flux")) == "fBxyz"
    assert outside.active(["fA1", "fA2", "fA3"]) == {"fA1": JobState.RUNNING, "fA2": JobState.PENDING}
    outside.cancel("fA2")
    inside = FluxQueue(env={"FLUX_JOB_ID": "fA1", "FLUX_URI": "local:///tmp/flux"})
    assert inside.submit(Path("/s/ensemble-1.flux")) == "fBxyz"
    inside.active(["fA1"])
    inside.cancel("fA2")
    assert inside.current_job({"FLUX_JOB_ID": "fA1"}) == "fA1"
    assert log.read_text().splitlines() == [
        "batch /s/ensemble-1.flux", "jobs -n --filter=pending,running -o {id.f58} {state}", "cancel fA2",
        "--parent batch /s/ensemble-1.flux", "--parent jobs -n --filter=pending,running -o {id.f58} {state}",
        "--parent cancel fA2"]


def test_flux_pool_submits_flux_batch_with_the_pool_line(edir, tmp_path, monkeypatch):
    log = fake_flux(tmp_path, monkeypatch, "")
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "flux")
    ens = create([run(i, sh("true")) for i in range(1, 4)])
    assert ens.execute_alloc(max_allocations=2) == "fBxyz"
    script = ens.setup_dir / "batch" / "ensemble-1.flux"
    execs = [shlex.split(line) for line in script.read_text().splitlines() if line.startswith("exec ")]
    assert execs[0][-2:] == ["--pool", str(ens.setup_dir / "batch" / "pool-1.json")]
    assert "--allow-multiple" in execs[0]
    # 8 cores per node (24 over 3 nodes): 3 runs do not fill an allocation: one, since none runs.
    assert pool.read(ens.setup_dir / "batch" / "pool-1.json").capacity == 8
    assert log.read_text().splitlines() == ["resource list -n -o {nnodes} {ncores}", f"batch {script}"]
    assert [e["detail"]["job_id"] for e in ens.events() if e["kind"] == "alloc_pool_submitted"] == ["fBxyz"]


def files(ens) -> dict:
    return {k: v for k, v in snapshot(ens.setup_dir).items() if not k.startswith("ensemble.db")}


@pytest.mark.parametrize("options, error, field", [
    (dict(max_allocations=0), SpecError, "max_allocations"),
    (dict(max_allocations=1.5), SpecTypeError, "max_allocations"),
    (dict(max_allocations=2, repeats=1), SpecError, "repeats"),
])
def test_bad_pool_input_is_refused_before_anything_is_written(edir, options, error, field):
    ens = create([run(1, sh("true"))])
    before = files(ens)
    with pytest.raises(error, match=f"^{field}: "):
        ens.execute_alloc(**options)
    assert files(ens) == before


@pytest.mark.parametrize("options, error, field", [
    (dict(runs_per_task=0), SpecError, "runs_per_task"),
    (dict(max_running=0), SpecError, "max_running"),
    (dict(runs_per_task="4"), SpecTypeError, "runs_per_task"),
])
def test_bad_array_input_is_refused_before_anything_is_written(edir, options, error, field):
    ens = create([run(1, sh("true"))])
    before = files(ens)
    with pytest.raises(error, match=f"^{field}: "):
        ens.execute_array(**options)
    assert files(ens) == before


def test_nothing_queued_is_one_error_line_and_nothing_submitted(edir, monkeypatch, capsys):
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "slurm")
    ens = create([run(1, sh("true"))])
    execute(ens)
    before = files(ens)
    for argv in (["submit", "--array"], ["submit", "--max-allocations", "3"]):
        assert main(["--setup-dir", str(ens.setup_dir), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no run is queued" in err and "Traceback" not in err
    assert files(ens) == before


def test_array_script_gives_each_task_its_range(edir, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "slurm")
    ens = create([run(i, sh("true")) for i in range(1, 24)])
    ens.dequeue_runs([5, 6])
    before = files(ens)
    done = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", str(ens.setup_dir), "submit", "--array",
                           "--runs-per-task", "10", "--max-running", "2", "--time", "9", "--dry-run"],
                          capture_output=True, text=True, check=True)
    text = done.stdout
    assert "#SBATCH --array=1-3%2\n" in text and "slurm-%A_%a.out" in text
    for task, expected in ((1, "1-12"), (2, "13-22"), (3, "23-23")):
        shown = subprocess.run(["bash", "-c", text.replace("exec ", "echo ", 1)], capture_output=True, text=True,
                               env={"SLURM_ARRAY_TASK_ID": str(task), "PATH": "/usr/bin:/bin"}, check=True).stdout
        argv = shlex.split(shown)
        assert argv[-2:] == ["--run-range", expected]
        args = build_parser().parse_args(argv[3:])
        assert args.allow_multiple and args.block and args.run_range == expected
    assert files(ens) == before and not (ens.setup_dir / "batch").exists()


def test_too_many_tasks_for_max_array_size_names_the_runs_per_task_to_use(edir, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "slurm")
    monkeypatch.setattr(arrays, "max_array_size", lambda: 11)
    ens = create([run(i, sh("true")) for i in range(1, 31)])
    with pytest.raises(SpecError, match=r"^runs_per_task: 1 makes 30 array tasks, more than .* \(10\); "
                                        r"use runs_per_task >= 3$"):
        ens.execute_array()


def test_a_run_range_manager_runs_only_its_runs(edir):
    ens = create([run(i, sh("true")) for i in range(1, 11)])
    code = main(["--setup-dir", str(ens.setup_dir), "execute", "--block", "-q", "--launcher", "local",
                 "--run-range", "3-6"])
    assert code == 0  # its range is done (the exit status speaks of the range only)
    done = {i for i, s in statuses(ens).items() if s is RunStatus.SUCCESS}
    assert done == {3, 4, 5, 6} and set(attempts_by_run(ens)) == {3, 4, 5, 6}
    assert main(["--setup-dir", str(ens.setup_dir), "execute", "--block", "-q", "--launcher", "local",
                 "--allow-multiple", "--run-range", "7-7"]) == 0
    assert statuses(ens)[7] is RunStatus.SUCCESS and statuses(ens)[8] is RunStatus.QUEUED


@pytest.mark.parametrize("value", ["6-3", "0-2", "a-b", "3", "1-2-3"])
def test_bad_run_range_is_one_error_line(edir, value, capsys):
    ens = create([run(1, sh("true"))])
    assert main(["--setup-dir", str(ens.setup_dir), "execute", "--block", "--run-range", value]) == 2
    err = capsys.readouterr().err
    assert f"ensemble: error: --run-range: expected run ids LO-HI with 1 <= LO <= HI, got {value!r}\n" in err
    assert err.count("error") == 1 and "Traceback" not in err


def test_a_tender_opens_the_ensemble_without_the_facade_and_counts_its_backlog(edir, tmp_path):
    from ensemble.alloc.autoalloc import backlog
    from ensemble.errors import EnsembleError
    from ensemble.setup.handle import EnsembleHandle

    with pytest.raises(EnsembleError, match="^setup_dir: no ensemble in"):
        EnsembleHandle(tmp_path / "nothing")
    create([run(i, sh("true")) for i in (1, 2, 3)]).close()
    with EnsembleHandle(SETUP) as handle:
        assert backlog(handle) == 3
        assert handle.submit_command({"op": "dequeue", "run_ids": [2]}) == "applied"
        assert backlog(handle) == 2
    with pytest.raises(sqlite3.ProgrammingError):  # closed on leaving the block
        handle.store.conn.execute("SELECT 1")

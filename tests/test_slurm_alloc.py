"""Against the real Slurm testbed: ``execute_alloc`` submits its own batch job, repeats chain
follow-up allocations until the ensemble is done, and nothing is left queued afterwards."""
from __future__ import annotations

import json
import subprocess
import sys

from engine_helpers import create, events, peak, run, sh, start_detached, statuses, wait_for, wait_manager_exit
from slurm_helpers import CPUS, DEADLINE

from ensemble.engine import EXIT_WORK_LEFT
from ensemble.setup import allocations
from ensemble.status import RunStatus


def job_field(slurm, job_id: str, key: str) -> str:
    fields = dict(t.split("=", 1) for t in slurm.run("scontrol", "show", "job", "-o", job_id).stdout.split()
                  if "=" in t)
    return fields[key]


def chain_jobs(ens, first: str) -> list[str]:
    return allocations.chains(ens.store)[first]["jobs"]


def wait_chain_done(slurm, ens, first: str) -> list[str]:
    """Wait until no job of the chain is queued or running; its job ids."""
    wait_for(lambda: not set(chain_jobs(ens, first)) & set(slurm.squeue()), f"chain {first} to end", 4 * DEADLINE)
    return chain_jobs(ens, first)


def output(ens, job: str) -> str:
    return (ens.setup_dir / "logs" / f"slurm-{job}.out").read_text()


def test_alloc_packs_200_mixed_runs_on_two_nodes_and_status_works_outside(edir, slurm):
    ens = create([run(i, sh(f"sleep 0.0{i % 10}", tasks=1 + i % 4, cores_per_task=1 + i // 4 % 2))
                  for i in range(1, 201)])
    job = ens.execute_alloc(nodes=2, timeout=5)
    assert job.isdigit() and allocations.chains(ens.store)[job]["script"].endswith(".sbatch")
    wait_for(lambda: ens.count_running() or ens.count_by_status(RunStatus.SUCCESS), "runs to start", DEADLINE)
    outside = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", str(ens.setup_dir), "status",
                              "--json"], capture_output=True, text=True, check=True)
    assert json.loads(outside.stdout)["total"] == 200
    assert job in slurm.squeue()  # so the status above was read while the job ran
    slurm.wait_gone([job])
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}, output(ens, job)
    assert job_field(slurm, job, "ExitCode") == "0:0"
    attempts = ens.attempts()
    assert len(attempts) == 200
    # Two nodes (which two is Slurm's choice: other jobs may hold some).
    assert len({share["node"] for a in attempts for share in a["placement"]}) == 2
    for node in ("node1", "node2"):
        busy = [(a["start"], a["end"], sum(len(s["cores"]) for s in a["placement"] if s["node"] == node))
                for a in attempts]
        assert peak(busy) <= CPUS
    assert job not in slurm.squeue()


def test_repeats_finish_the_ensemble_over_several_allocations(edir, slurm):
    # Two runs at a time of 5 s each: a 1-minute allocation (the manager stops kill_grace + 10 s
    # before its end) cannot do all 20, and interrupts the two running at its end.
    ens = create([run(i, sh("sleep 5")) for i in range(1, 21)])
    first = ens.execute_alloc(nodes=1, timeout=1, repeats=2, max_concurrency=2, kill_grace=1)
    jobs = wait_chain_done(slurm, ens, first)
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}, output(ens, jobs[-1])
    assert len(jobs) == 3, jobs
    assert job_field(slurm, first, "ExitCode") == f"{EXIT_WORK_LEFT}:0", output(ens, first)
    started = [e["detail"]["job_id"] for e in events(ens, "manager_started")]
    assert started == jobs[:2]
    assert [e["detail"]["job_id"] for e in events(ens, "alloc_cancelled")] == [jobs[2]]
    assert job_field(slurm, jobs[2], "JobState") == "CANCELLED"
    outcomes: dict[int, list[str]] = {}
    for a in ens.attempts():
        outcomes.setdefault(a["run_id"], []).append(a["outcome"])
    assert all(o.count("success") == 1 and set(o) <= {"success", "interrupted"} for o in outcomes.values()), outcomes
    assert any("interrupted" in o for o in outcomes.values())
    assert {r["restarts"] for r in ens.runs()} == {0}
    assert not set(jobs) & set(slurm.squeue())


def test_step_whose_timeout_does_not_fit_runs_in_the_next_allocation(edir, slurm):
    # Run 1 takes 10 s; then run 2's 42 s step timeout no longer fits before the manager's end
    # (at most 60 - 11 s after the job's start): it stays queued (exit 5) and runs in the
    # follow-up, where it fits.
    ens = create([run(1, sh("sleep 10")), run(2, sh("true", timeout=0.7))])
    first = ens.execute_alloc(nodes=1, timeout=1, repeats=1, max_concurrency=1, kill_grace=1)
    jobs = wait_chain_done(slurm, ens, first)
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}, output(ens, jobs[-1])
    assert job_field(slurm, first, "ExitCode") == f"{EXIT_WORK_LEFT}:0", output(ens, first)
    assert len(jobs) == 2 and job_field(slurm, jobs[1], "ExitCode") == "0:0"
    second = [e for e in events(ens, "manager_started") if e["detail"]["job_id"] == jobs[1]]
    (late,) = ens.attempts(2)
    assert late["outcome"] == "success" and late["start"] > second[0]["time"]
    assert not set(jobs) & set(slurm.squeue())


def test_alloc_while_a_manager_runs_is_recorded_by_that_manager(edir, slurm):
    # The running manager is the only writer: the chain's record reaches it through its inbox,
    # and the job, released only once that record is in, shares the work.
    ens = create([run(i, sh("sleep 0.5")) for i in range(1, 41)])
    pid = start_detached(ens, cores=1, launcher="local", allow_multiple=True)
    wait_for(lambda: ens.count_running(), "the local manager to start runs")
    job = ens.execute_alloc(nodes=1, timeout=5, allow_multiple=True)
    assert [e["detail"]["job_id"] for e in events(ens, "alloc_submitted")] == [job]
    slurm.wait_gone([job])
    wait_manager_exit(ens, pid, DEADLINE)
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}, output(ens, job)
    assert job in [e["detail"].get("job_id") for e in events(ens, "manager_started")]

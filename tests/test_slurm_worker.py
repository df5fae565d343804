"""Against the real Slurm testbed: the node-local worker path (``launcher="worker"``).

One ``srun --overlap`` per node starts a worker; single-task steps go through it, wider ones
through ``srun``.  A worker killed mid-run loses nothing: its runs go back to the queue and run
on the other nodes, and nothing is left running afterwards.
"""
from __future__ import annotations

import os
import signal
from pathlib import Path

from engine_helpers import attempts_by_run, create, run, sh, statuses, wait_file, wait_for
from slurm_helpers import CPUS, batch_script

from ensemble.status import RunStatus


def processes_with(*needles: bytes) -> list[int]:
    """Live processes whose environment holds one of ``needles``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry.name}/environ").read_bytes()
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(needle in environ for needle in needles):
            found.append(int(entry.name))
    return found


def job_processes(job_id: str) -> list[int]:
    """Live processes of the job (its environment names it)."""
    return processes_with(f"SLURM_JOB_ID={job_id}\0".encode())


def test_two_thousand_tiny_runs_through_workers_each_once(edir, slurm):
    wide = {7, 500, 1500}
    ens = create([run(i, sh("true", tasks=2) if i in wide else sh("true")) for i in range(1, 2001)])
    script = batch_script(edir / "job.sh", ens.setup_dir, "--launcher", "worker")
    job, code = slurm.sbatch_wait(script, edir / "job.out", "-N", "3", "--exclusive", "-t", "5")
    assert code == 0, (edir / "job.out").read_text()
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    by_run = attempts_by_run(ens)
    assert len(by_run) == 2000 and all(len(a) == 1 for a in by_run.values())
    nodes = {s["node"] for a in ens.attempts() for s in a["placement"]}
    (started,) = [e["detail"] for e in ens.events() if e["kind"] == "executor_started"]
    assert len(nodes) == 3 and set(started["workers"]) == nodes, "one worker per node of the job, all used"
    for run_id, (attempt,) in by_run.items():
        if run_id in wide:
            assert attempt["command"][:2] == ["srun", "--exact"]
        else:
            assert attempt["command"] == ["sh", "-c", "true"] and len(attempt["placement"]) == 1
    wait_for(lambda: not job_processes(job), f"no process of job {job} left")


def test_a_killed_worker_loses_no_run_and_leaves_no_process(edir, slurm):
    gate = edir / "go"
    ens = create([run(i, sh(f"echo $PPID > ppid.$ENSEMBLE_ATTEMPT; {wait_file(gate)}")) for i in range(1, 61)])
    script = batch_script(edir / "job.sh", ens.setup_dir, "--launcher", "worker")
    job = slurm.run("sbatch", "--parsable", "-N", "3", "--exclusive", "-t", "5", "-o", str(edir / "job.out"),
                    str(script)).stdout.strip().split(";")[0]
    try:
        running = wait_for(lambda: len(started := _started(ens)) == 3 * CPUS and started, "every slot busy", 90)
        victim = sorted({a["placement"][0]["node"] for a in ens.attempts()})[1]  # whichever nodes Slurm gave
        on_victim = [a["run_id"] for a in ens.attempts() if a["placement"][0]["node"] == victim]
        worker = running[on_victim[0]]
        assert f"SLURMD_NODENAME={victim}\0".encode() in Path(f"/proc/{worker}/environ").read_bytes()
        tags = [f"ENSEMBLE_LAUNCH={manager(ens)}/{r}.1\0".encode() for r in on_victim]
        assert len(processes_with(*tags)) >= CPUS
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: sum(a["outcome"] == "interrupted" for a in ens.attempts()) == CPUS,
                 f"{victim}'s attempts recorded interrupted", 60)
        wait_for(lambda: not processes_with(*tags), "the dead worker's attempts killed (the gate is still shut)")
    finally:
        gate.touch()
    slurm.wait_gone([job])
    assert slurm.job_state(job) == "COMPLETED", (edir / "job.out").read_text()
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    for run_id, attempts in attempts_by_run(ens).items():
        outcomes = [a["outcome"] for a in attempts]
        if run_id in on_victim:
            assert outcomes == ["interrupted", "success"]
            assert attempts[1]["placement"][0]["node"] != victim
        else:
            assert outcomes == ["success"]
    assert all(r["restarts"] == 0 for r in ens.runs())
    wait_for(lambda: not job_processes(job), f"no process of job {job} left")
    assert not _tagged_leftovers(ens)


def _started(ens) -> dict[int, int]:
    """Run id -> the worker pid (parent of its first attempt's shell), for first attempts that started."""
    found = {}
    for row in ens.runs():
        path = Path(row["run_dir"], "ppid.1")
        text = path.read_text().strip() if path.is_file() else ""
        if text:
            found[row["id"]] = int(text)
    return found


def manager(ens) -> str:
    return next(e["detail"]["manager"] for e in ens.events() if e["kind"] == "manager_started")


def _tagged_leftovers(ens) -> list[int]:
    """Processes still carrying one of the ensemble's launch tags."""
    return processes_with(f"ENSEMBLE_LAUNCH={manager(ens)}/".encode())

"""Against the real Slurm testbed: a user's own sbatch script runs ``ensemble execute --block``
and the manager starts every step with ``srun`` on the nodes it chose."""
from __future__ import annotations

from pathlib import Path

from engine_helpers import create, peak, run, sh, statuses
from slurm_helpers import CPUS, batch_script

from ensemble.engine import EXIT_RUNS_FAILED
from ensemble.status import RunStatus


def sbatch_wait(slurm, script: Path, *options: str) -> tuple[str, int]:
    """Submit, wait for the job to end; its id and exit code."""
    done = slurm.run("sbatch", "--parsable", "--wait", *options, str(script), check=False)
    job_id = done.stdout.strip().split(";")[0]
    return job_id, done.returncode


def test_own_batch_script_runs_every_step_through_srun(edir, slurm):
    ens = create([run(i, sh("echo $SLURMD_NODENAME $SLURM_STEP_ID > where.txt", tasks=1 + i % 2,
                            cores_per_task=1 + i % 3)) for i in range(1, 41)])
    script = batch_script(edir / "job.sh", ens.setup_dir)
    job, code = sbatch_wait(slurm, script, "-N", "2", "--exclusive", "-t", "5", "-o", str(edir / "job.out"))
    assert code == 0, (edir / "job.out").read_text()
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    attempts = ens.attempts()
    assert len(attempts) == 40
    nodes = {share["node"] for a in attempts for share in a["placement"]}
    assert len(nodes) == 2  # which two depends on what other jobs hold
    for a in attempts:
        assert a["command"][:2] == ["srun", "--exact"]
        where = Path(ens.runs([a["run_id"]])[0]["run_dir"], "where.txt").read_text()
        assert where.split()[0] in {s["node"] for s in a["placement"]}
    for node in nodes:
        busy = [(a["start"], a["end"], sum(len(s["cores"]) for s in a["placement"] if s["node"] == node))
                for a in attempts]
        assert peak(busy) <= CPUS
    assert job not in slurm.squeue()


def test_exit_code_says_some_runs_failed(edir, slurm):
    ens = create([run(1, sh("true")), run(2, sh("exit 7"))])
    script = batch_script(edir / "job.sh", ens.setup_dir)
    _, code = sbatch_wait(slurm, script, "-N", "1", "--exclusive", "-t", "5", "-o", str(edir / "job.out"))
    assert code == EXIT_RUNS_FAILED, (edir / "job.out").read_text()

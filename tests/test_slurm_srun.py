"""Against the real Slurm testbed: a user's own sbatch script runs ``ensemble execute --block``
and the manager starts every step with ``srun`` on the nodes it chose."""
from __future__ import annotations

import time
from pathlib import Path

from engine_helpers import create, events, peak, run, sh, statuses
from slurm_helpers import CPUS, batch_script

from ensemble.engine import EXIT_RUNS_FAILED
from ensemble.status import RunStatus


def test_own_batch_script_runs_every_step_through_srun(edir, slurm):
    ens = create([run(i, sh("echo $SLURMD_NODENAME $SLURM_STEP_ID > where.txt", tasks=1 + i % 2,
                            cores_per_task=1 + i % 3)) for i in range(1, 41)])
    script = batch_script(edir / "job.sh", ens.setup_dir)
    started_at = time.time()
    job, code = slurm.sbatch_wait(script, edir / "job.out", "-N", "2", "--exclusive", "-t", "5")
    assert code == 0, (edir / "job.out").read_text()
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    attempts = ens.attempts()
    assert len(attempts) == 40
    started = events(ens, "manager_started")[0]["detail"]
    nodes = {share["node"] for a in attempts for share in a["placement"]}
    assert len(started["nodes"]) == 2 and nodes == set(started["nodes"]), "both nodes of the job, only them"
    for a in attempts:
        assert a["command"][:2] == ["srun", "--exact"]
        where = Path(ens.runs([a["run_id"]])[0]["run_dir"], "where.txt").read_text()
        assert where.split()[0] in {s["node"] for s in a["placement"]}
    assert started["provider"] == "slurm" and started["job_id"] == job
    assert started["cores"] == 2 * CPUS
    assert started["gpu_ids"] == ["0", "1", "0", "1"], "GPU ids per node from the job's GRES"
    assert started["end_time"] > started_at
    for node in started["nodes"]:
        busy = [(a["start"], a["end"], sum(len(s["cores"]) for s in a["placement"] if s["node"] == node))
                for a in attempts]
        assert peak(busy) <= CPUS


def test_exit_code_says_some_runs_failed(edir, slurm):
    ens = create([run(1, sh("true")), run(2, sh("exit 7"))])
    script = batch_script(edir / "job.sh", ens.setup_dir)
    _, code = slurm.sbatch_wait(script, edir / "job.out", "-N", "1", "--exclusive", "-t", "5")
    assert code == EXIT_RUNS_FAILED, (edir / "job.out").read_text()

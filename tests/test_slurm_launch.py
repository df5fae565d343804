"""Against the real Slurm testbed: what a step started with srun sees (GPUs, the batch-script
launch prefix).  The testbed's GPUs are files Slurm counts but cannot bind (not device nodes)."""
from __future__ import annotations

import shlex
from pathlib import Path

from engine_helpers import create, run, sh, statuses, wait_file
from slurm_helpers import GPUS, batch_script

from ensemble import CompositeRun, Step
from ensemble.launchers import SrunLauncher
from ensemble.providers.resources import Placement, Share
from ensemble.status import RunStatus

SEEN = 'echo "$SLURMD_NODENAME ${CUDA_VISIBLE_DEVICES-unset} ${SLURM_GPUS_ON_NODE-0}" > seen.$SLURM_PROCID'


def submit(slurm, ens, directory: Path, *options: str) -> None:
    script = batch_script(directory / "job.sh", ens.setup_dir)
    _, code = slurm.sbatch_wait(script, directory / "job.out", *options, "--exclusive", "-t", "5")
    assert code == 0, (directory / "job.out").read_text()


def test_gpu_steps_see_the_gpu_count_the_manager_placed(edir, slurm):
    ens = create([run(1, sh(SEEN, tasks=2, gpus_per_task=1)), run(2, sh(SEEN, gpus_per_task=2)),
                  run(3, sh(SEEN))])
    submit(slurm, ens, edir, "-N", "2", f"--gres=gpu:{GPUS}")
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    for attempt in ens.attempts():
        run_dir = Path(ens.runs([attempt["run_id"]])[0]["run_dir"])
        placed = {s["node"]: s["gpus"] for s in attempt["placement"]}
        for seen in run_dir.glob("seen.*"):
            node, visible, count = seen.read_text().split()
            assert int(count) == len(placed[node])
            # Slurm owns the variable: it binds devices it can (a subset of the job's ids on the node)
            # and removes the manager's value where it cannot, as with the testbed's files.
            assert visible == "unset" or len(visible.split(",")) <= len(placed[node])


def test_a_step_without_gpus_does_not_hold_the_job_gpus(edir, slurm):
    # Run 1 holds its node until run 2's GPU step has started next to it on the same node.
    started, gate = edir / "started", edir / "gate"
    ens = create([run(1, sh(f"touch {started}; {wait_file(gate)}", timeout=1)),
                  CompositeRun({"x": 2}, [sh(wait_file(started)), sh(f"touch {gate}", gpus_per_task=GPUS)])])
    submit(slurm, ens, edir, "-N", "1", f"--gres=gpu:{GPUS}")
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}


def test_batch_script_launch_token_is_the_srun_prefix(edir, slurm):
    script = edir / "app.sh"
    script.write_text('#!/bin/sh\necho "%%ensemble_launch%%" > launch.txt\n'
                      '%%ensemble_launch%% sh -c \'echo $SLURMD_NODENAME\' > nodes.txt\n')
    ens = create([CompositeRun({"x": 1}, [Step([str(script)], tasks=3, cores_per_task=3)])])
    submit(slurm, ens, edir, "-N", "2")
    assert statuses(ens) == {1: RunStatus.SUCCESS}
    (attempt,) = ens.attempts()
    run_dir = Path(ens.runs()[0]["run_dir"])
    placement = Placement(tuple(Share(s["node"], s["tasks"], tuple(s["cores"]), tuple(s["gpus"]))
                                for s in attempt["placement"]))
    prefix = SrunLauncher().prefix(Step([str(script)], tasks=3, cores_per_task=3), placement)
    assert shlex.split((run_dir / "launch.txt").read_text()) == prefix
    assert attempt["command"] == [str(run_dir / "app.sh")]
    nodes = (run_dir / "nodes.txt").read_text().split()
    assert sorted(nodes) == sorted(s["node"] for s in attempt["placement"] for _ in range(s["tasks"]))

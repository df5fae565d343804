"""Launchers: the command line and the environment binding a step to its cores and GPU ids.

No GPU exists on the test machines: placements come from a real :class:`Pool` over nodes whose GPU ids
are given as strings, the way detection would report them.
"""
from __future__ import annotations

import pytest

from ensemble import Step
from ensemble.backends import WORKER_AUTO_RUNS, resolve_launcher
from ensemble.errors import SpecError
from ensemble.launchers import LocalLauncher
from ensemble.resources import VISIBLE_DEVICES_VARS, Node, Pool


def gpu_env(env: dict[str, str]) -> set[str]:
    """The one value all three GPU variables share (a set, so a mismatch shows)."""
    return {env[var] for var in VISIBLE_DEVICES_VARS}


def test_each_step_gets_exactly_its_own_preset_device_ids():
    pool = Pool((Node("host", (0, 1, 2, 3), ("2", "3")),))
    step = Step(["app"], gpus_per_task=1, batch_script=False)
    launcher = LocalLauncher()
    first, second = pool.allocate(1, 1, 1), pool.allocate(1, 1, 1)
    assert gpu_env(launcher.env(step, first)) == {"2"}
    assert gpu_env(launcher.env(step, second)) == {"3"}


def test_uuid_and_mig_ids_pass_through_joined_by_commas():
    pool = Pool((Node("host", (0, 1), ("GPU-5d5ba0d6", "MIG-c6d4f1ef")),))
    step = Step(["app"], tasks=2, gpus_per_task=1, batch_script=False)
    env = LocalLauncher().env(step, pool.allocate(2, 1, 1))
    assert gpu_env(env) == {"GPU-5d5ba0d6,MIG-c6d4f1ef"}


@pytest.mark.parametrize("node_gpus", [("0", "1"), ()])
def test_a_step_without_gpus_gets_empty_gpu_variables_and_its_thread_count(node_gpus):
    pool = Pool((Node("host", (0, 1, 2, 3), node_gpus),))
    step = Step(["app"], cores_per_task=3, batch_script=False)
    env = LocalLauncher().env(step, pool.allocate(1, 3, 0))
    assert env == {"OMP_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": "", "ROCR_VISIBLE_DEVICES": "",
                   "HIP_VISIBLE_DEVICES": ""}


def test_local_command_is_the_argv_itself():
    pool = Pool((Node("host", (0,)),))
    placement = pool.allocate(1, 1, 0)
    launcher = LocalLauncher()
    step = Step(["app", "-v"], batch_script=False)
    assert launcher.prefix(step, placement) == []
    assert launcher.command(step, placement, ["app", "-v"], batch_script=False) == ["app", "-v"]
    assert launcher.command(step, placement, ["./run.sh"], batch_script=True) == ["./run.sh"]


def test_unknown_launcher_names_itself():
    with pytest.raises(SpecError, match="launcher: expected one of auto, local, srun, mpirun, worker, got 'slurm'"):
        resolve_launcher("slurm")


def test_srun_outside_slurm_is_a_clear_error():
    with pytest.raises(SpecError, match="launcher: 'srun' needs a Slurm allocation"):
        resolve_launcher("srun", env={})


def test_auto_outside_slurm_is_local():
    assert resolve_launcher("auto", env={}) == "local"
    assert resolve_launcher("auto", env={}, queued=10 ** 6) == "local"


def test_worker_outside_slurm_is_a_clear_error():
    with pytest.raises(SpecError, match="launcher: 'worker' needs a Slurm allocation"):
        resolve_launcher("worker", env={})


def test_auto_in_slurm_picks_workers_for_large_ensembles(tmp_path, monkeypatch):
    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    job = {"SLURM_JOB_ID": "1"}
    assert resolve_launcher("auto", env=job, queued=WORKER_AUTO_RUNS - 1) == "srun"
    assert resolve_launcher("auto", env=job, queued=WORKER_AUTO_RUNS) == "worker"

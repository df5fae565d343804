"""Launchers: the command line and the environment binding a step to its cores and GPU ids.

No GPU exists on the test machines: placements come from a real :class:`Pool` over nodes whose GPU ids
are given as strings, the way detection would report them.
"""
from __future__ import annotations

import os
import shutil

import pytest

from ensemble import Step
from ensemble.alloc.backends import WORKER_AUTO_RUNS, check_mpi, resolve_launcher
from ensemble.errors import SpecError
from ensemble.launchers import LocalLauncher, MpirunLauncher, SrunLauncher
from ensemble.launchers.mpirun import MPICH, OPEN_MPI, mpi_flavour
from ensemble.launchers.srun import parse_mpi_list
from ensemble.providers.resources import VISIBLE_DEVICES_VARS, Node, Placement, Pool, Share

#: ``srun --mpi=list`` of Slurm 22.05 (Debian 12), as printed.
MPI_LIST = ("MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\n"
            "specific pmix plugin versions available: pmix_v4\n")
SRUN_TAIL = ["--kill-on-bad-exit=1"]


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
    with pytest.raises(SpecError,
                       match="launcher: expected one of auto, local, srun, mpirun, worker, jsrun, lrun, flux, got 'slurm'"):
        resolve_launcher("slurm")


def test_srun_outside_slurm_is_a_clear_error():
    with pytest.raises(SpecError, match="launcher: 'srun' needs a Slurm allocation"):
        resolve_launcher("srun", env={})


def test_auto_outside_slurm_is_local():
    assert resolve_launcher("auto", env={}) == "local"
    assert resolve_launcher("auto", env={}, queued=10 ** 6) == "local"


# -- srun -------------------------------------------------------------------------------------------
def nodes(count: int, cores: int = 8, gpus: int = 0) -> Pool:
    return Pool(tuple(Node(f"n{k}", tuple(range(cores)), tuple(str(g) for g in range(gpus)))
                      for k in range(1, count + 1)))


def test_srun_single_node_step():
    step = Step(["app"], tasks=2, cores_per_task=3, batch_script=False)
    placement = nodes(2).allocate(2, 3, 0)
    assert SrunLauncher().command(step, placement, ["app", "-x"], batch_script=False) == [
        "srun", "--exact", "-N", "1", "-n", "2", "-c", "3", "--gres=none", "-w", "n1", *SRUN_TAIL, "app", "-x"]


def test_srun_even_multi_node_step_names_each_node_once():
    step = Step(["app"], tasks=4, cores_per_task=3, batch_script=False)
    placement = nodes(2).allocate(4, 3, 0)
    assert [s.tasks for s in placement.shares] == [2, 2]
    assert SrunLauncher().prefix(step, placement) == [
        "srun", "--exact", "-N", "2", "-n", "4", "-c", "3", "--gres=none", "-w", "n1,n2", *SRUN_TAIL]


def test_srun_uneven_multi_node_step_is_arbitrary_with_one_name_per_task():
    step = Step(["app"], tasks=3, batch_script=False)
    placement = Placement((Share("n1", 2, (0, 1), ()), Share("n2", 1, (0,), ())))
    assert SrunLauncher().prefix(step, placement) == [
        "srun", "--exact", "-N", "2", "-n", "3", "-c", "1", "--gres=none", "-m", "arbitrary", "-w", "n1,n1,n2",
        *SRUN_TAIL]


def test_srun_gpu_step_asks_gpus_per_task():
    step = Step(["app"], tasks=2, gpus_per_task=1, batch_script=False)
    placement = nodes(1, gpus=2).allocate(2, 1, 1)
    assert SrunLauncher().prefix(step, placement) == [
        "srun", "--exact", "-N", "1", "-n", "2", "-c", "1", "--gpus-per-task=1", "-w", "n1", *SRUN_TAIL]


@pytest.mark.parametrize(("timeout", "minutes"), [(0.02, "2"), (1, "2"), (2.5, "4")])
def test_srun_time_limit_is_a_whole_minute_after_the_step_timeout(timeout, minutes):
    step = Step(["app"], timeout=timeout, batch_script=False)
    words = SrunLauncher().prefix(step, nodes(1).allocate(1, 1, 0))
    assert words[words.index("-t"):words.index("-t") + 2] == ["-t", minutes]


@pytest.mark.parametrize(("mpi", "flag"), [("pmix", ["--mpi=pmix"]), ("pmi2", ["--mpi=pmi2"]), (None, [])])
def test_srun_mpi_plugin_is_passed_when_chosen(mpi, flag):
    step = Step(["app"], batch_script=False)
    assert SrunLauncher(mpi).prefix(step, nodes(1).allocate(1, 1, 0)) == [
        "srun", "--exact", "-N", "1", "-n", "1", "-c", "1", "--gres=none", "-w", "n1", *flag, *SRUN_TAIL]


def test_srun_batch_script_is_not_prefixed():
    step = Step(["job.sh"], tasks=2)
    placement = nodes(1).allocate(2, 1, 0)
    assert SrunLauncher("pmix").command(step, placement, ["/run/1/job.sh"], batch_script=True) == ["/run/1/job.sh"]


def test_srun_mpi_list_is_read_with_specific_versions():
    assert parse_mpi_list(MPI_LIST) == {"pmix", "none", "cray_shasta", "pmi2", "pmix_v4"}


# -- choosing --mpi ---------------------------------------------------------------------------------
def test_mpi_option_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no srun to ask: the name check alone decides
    assert check_mpi("pmi2", "srun", env={"ENSEMBLE_MPI": "pmix"}) == "pmi2"
    assert check_mpi(None, "srun", env={"ENSEMBLE_MPI": "pmix"}) == "pmix"
    assert check_mpi(None, "srun", env={}) is None


def test_mpi_concerns_only_srun():
    assert check_mpi("pmix", "local", env={}) is None
    assert check_mpi(None, "mpirun", env={"ENSEMBLE_MPI": "pmix"}) is None


def test_a_bad_mpi_name_says_where_it_came_from():
    with pytest.raises(SpecError, match="ENSEMBLE_MPI: expected an srun --mpi plugin name .* got 'pm ix'"):
        check_mpi(None, "local", env={"ENSEMBLE_MPI": "pm ix"})
    with pytest.raises(SpecError, match="^mpi: expected an srun --mpi plugin name .* got 3"):
        check_mpi(3, "srun", env={})


def test_mpi_name_srun_does_not_offer_is_refused(slurm):
    with pytest.raises(SpecError, match="mpi: srun offers --mpi=.*pmi2.*pmix.*, not 'pmx'"):
        check_mpi("pmx", "srun", env={})
    assert check_mpi("pmix_v4", "srun", env={}) == "pmix_v4"


# -- mpirun -----------------------------------------------------------------------------------------
@pytest.fixture(params=[0, 1000], ids=["root", "user"])
def euid(request, monkeypatch) -> int:
    monkeypatch.setattr(os, "geteuid", lambda: request.param)
    return request.param


def test_open_mpi_command_line(euid):
    step = Step(["app"], tasks=3, batch_script=False)
    placement = Placement((Share("n1", 2, (0, 1), ()), Share("n2", 1, (0,), ())))
    launcher = MpirunLauncher("mpiexec", OPEN_MPI)
    root = ["--allow-run-as-root"] if euid == 0 else []
    assert launcher.command(step, placement, ["app"], batch_script=False) == [
        "mpiexec", "-np", "3", "--host", "n1:2,n2:1", "--bind-to", "none", "--oversubscribe", *root, "app"]
    env = launcher.env(step, placement)
    assert ("OMPI_ALLOW_RUN_AS_ROOT" in env) == (euid == 0)
    if euid == 0:
        assert env["OMPI_ALLOW_RUN_AS_ROOT"] == env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] == "1"


def test_mpich_command_line_has_no_root_flags(euid):
    step = Step(["app"], tasks=4, batch_script=False)
    placement = nodes(1).allocate(4, 1, 0)
    launcher = MpirunLauncher("/opt/mpich/bin/mpiexec", MPICH)
    assert launcher.prefix(step, placement) == ["/opt/mpich/bin/mpiexec", "-n", "4", "-hosts", "n1:4", "-bind-to",
                                                "none"]
    assert not any(k.startswith("OMPI_") for k in launcher.env(step, placement))


@pytest.mark.skipif(not shutil.which("mpirun"), reason="no mpirun on PATH")
def test_installed_mpirun_flavour_is_detected():
    version = os.popen("mpirun --version").read()
    assert mpi_flavour("mpirun") == (OPEN_MPI if "Open MPI" in version else MPICH)


def test_mpirun_program_comes_from_ensemble_mpirun():
    with pytest.raises(SpecError, match="launcher: 'mpirun' runs '/nonexistent/mpiexec' \\(ENSEMBLE_MPIRUN\\)"):
        resolve_launcher("mpirun", env={"ENSEMBLE_MPIRUN": "/nonexistent/mpiexec"})
    if shutil.which("mpiexec"):
        assert resolve_launcher("mpirun", env={"ENSEMBLE_MPIRUN": "mpiexec"}) == "mpirun"


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

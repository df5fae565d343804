"""jsrun and lrun: the exact command lines, environment and ``%%ensemble_launch%%`` text.

No LSF exists on the test machines: these check the words the launchers build, not a run.
"""
from __future__ import annotations

import pytest

from ensemble import Step
from ensemble.alloc.backends import choose_backend, resolve_launcher
from ensemble.errors import SpecError
from ensemble.launchers import JsrunLauncher, LrunLauncher
from ensemble.prep.rundir import RunDirPreparer
from ensemble.providers.resources import VISIBLE_DEVICES_VARS, Node, Placement, Pool, Share
from ensemble.spec.templating import Template


def hosts(count: int, cores: int = 40, gpus: int = 0) -> Pool:
    return Pool(tuple(Node(f"lassen{k}", tuple(range(cores)), tuple(str(g) for g in range(gpus)))
                      for k in range(1, count + 1)))


UNEVEN = Placement((Share("lassen1", 2, (0, 1), ()), Share("lassen2", 1, (0,), ())))


# -- jsrun ------------------------------------------------------------------------------------------
def test_jsrun_single_node_step():
    step = Step(["app"], tasks=2, cores_per_task=3, batch_script=False)
    placement = hosts(2).allocate(2, 3, 0)
    assert JsrunLauncher().command(step, placement, ["app", "-x"], batch_script=False) == [
        "jsrun", "--nrs", "2", "--tasks_per_rs", "1", "--cpu_per_rs", "3", "--gpu_per_rs", "0",
        "--rs_per_host", "2", "--bind", "rs", "app", "-x"]


def test_jsrun_multi_node_step_caps_resource_sets_per_host():
    step = Step(["app"], tasks=80, batch_script=False)
    placement = hosts(2).allocate(80, 1, 0)
    assert [s.tasks for s in placement.shares] == [40, 40]
    assert JsrunLauncher().prefix(step, placement) == [
        "jsrun", "--nrs", "80", "--tasks_per_rs", "1", "--cpu_per_rs", "1", "--gpu_per_rs", "0",
        "--rs_per_host", "40", "--bind", "rs"]


def test_jsrun_uneven_step_takes_the_largest_share_per_host():
    step = Step(["app"], tasks=3, batch_script=False)
    assert JsrunLauncher().prefix(step, UNEVEN)[-4:] == ["--rs_per_host", "2", "--bind", "rs"]


def test_jsrun_gpu_step():
    step = Step(["app"], tasks=4, cores_per_task=10, gpus_per_task=1, batch_script=False)
    placement = hosts(1, gpus=4).allocate(4, 10, 1)
    assert JsrunLauncher().prefix(step, placement) == [
        "jsrun", "--nrs", "4", "--tasks_per_rs", "1", "--cpu_per_rs", "10", "--gpu_per_rs", "1",
        "--rs_per_host", "4", "--bind", "rs"]


@pytest.mark.parametrize(("timeout", "limit"), [(0.02, "2m"), (1, "2m"), (2.5, "4m")])
def test_jsrun_time_limit_is_a_timeout_backstop_a_minute_later(timeout, limit):
    step = Step(["app"], timeout=timeout, batch_script=False)
    words = JsrunLauncher().command(step, hosts(1).allocate(1, 1, 0), ["app"], batch_script=False)
    assert words[-6:] == ["--bind", "rs", "timeout", "--kill-after=30", limit, "app"]


# -- lrun -------------------------------------------------------------------------------------------
def test_lrun_single_node_step():
    step = Step(["app"], tasks=2, cores_per_task=3, batch_script=False)
    placement = hosts(2).allocate(2, 3, 0)
    assert LrunLauncher().command(step, placement, ["app", "-x"], batch_script=False) == [
        "lrun", "-N1", "-T2", "-c3", "-g0", "app", "-x"]


def test_lrun_even_multi_node_step_gives_tasks_per_node():
    step = Step(["app"], tasks=80, batch_script=False)
    assert LrunLauncher().prefix(step, hosts(2).allocate(80, 1, 0)) == ["lrun", "-N2", "-T40", "-c1", "-g0"]


def test_lrun_uneven_step_gives_the_total():
    step = Step(["app"], tasks=3, batch_script=False)
    assert LrunLauncher().prefix(step, UNEVEN) == ["lrun", "-N2", "-p3", "-c1", "-g0"]


def test_lrun_gpu_step():
    step = Step(["app"], tasks=4, gpus_per_task=1, batch_script=False)
    assert LrunLauncher().prefix(step, hosts(1, gpus=4).allocate(4, 1, 1)) == ["lrun", "-N1", "-T4", "-c1", "-g1"]


@pytest.mark.parametrize(("timeout", "limit"), [(0.5, "2m"), (10, "11m")])
def test_lrun_has_a_time_limit(timeout, limit):
    step = Step(["app"], tasks=2, timeout=timeout, batch_script=False)
    assert LrunLauncher().command(step, hosts(1).allocate(2, 1, 0), ["app"], batch_script=False) == [
        "lrun", "-N1", "-T2", "-c1", "-g0", "timeout", "--kill-after=30", limit, "app"]


# -- both -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("launcher", [JsrunLauncher(), LrunLauncher()], ids=["jsrun", "lrun"])
def test_batch_script_is_not_prefixed(launcher):
    step = Step(["job.sh"], tasks=2, timeout=5)
    assert launcher.command(step, hosts(1).allocate(2, 1, 0), ["/run/1/job.sh"], batch_script=True) == ["/run/1/job.sh"]


@pytest.mark.parametrize("launcher", [JsrunLauncher(), LrunLauncher()], ids=["jsrun", "lrun"])
def test_gpu_variables_are_jsms_for_gpu_steps_and_empty_otherwise(launcher):
    gpu = Step(["app"], gpus_per_task=1, cores_per_task=2, batch_script=False)
    env = launcher.env(gpu, hosts(1, gpus=4).allocate(1, 2, 1))
    assert env == {"OMP_NUM_THREADS": "2"}
    cpu = Step(["app"], batch_script=False)
    env = launcher.env(cpu, hosts(1, gpus=4).allocate(1, 1, 0))
    assert {env[var] for var in VISIBLE_DEVICES_VARS} == {""}


@pytest.mark.parametrize(("launcher", "line"), [
    (JsrunLauncher(), "jsrun --nrs 2 --tasks_per_rs 1 --cpu_per_rs 4 --gpu_per_rs 1 --rs_per_host 2 --bind rs "
                      "timeout --kill-after=30 31m ./sim"),
    (LrunLauncher(), "lrun -N1 -T2 -c4 -g1 timeout --kill-after=30 31m ./sim")], ids=["jsrun", "lrun"])
def test_ensemble_launch_in_a_batch_script(tmp_path, launcher, line):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n%%ensemble_launch%% ./sim\n[%%themis_launch%%]\n")
    step = Step(["job.sh"], tasks=2, cores_per_task=4, gpus_per_task=1, timeout=30)
    prefix = " ".join(launcher.prefix(step, hosts(1, gpus=4).allocate(2, 4, 1)))
    text = Template.load(script).render(RunDirPreparer.values(1, str(tmp_path), {}, prefix))
    assert text == f"#!/bin/bash\n{line}\n[{line.removesuffix(' ./sim')}]\n"


# -- choosing them ----------------------------------------------------------------------------------
def fake_path(tmp_path, monkeypatch, *names: str) -> None:
    for name in names:
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))


JOB = {"LSB_JOBID": "4242"}


@pytest.mark.parametrize(("commands", "chosen"), [(("lrun", "jsrun"), "lrun"), (("jsrun",), "jsrun"), ((), "local")])
def test_auto_in_lsf_prefers_lrun_then_jsrun_and_never_fails_on_missing_commands(tmp_path, monkeypatch, commands,
                                                                                 chosen):
    fake_path(tmp_path, monkeypatch, *commands)
    assert resolve_launcher("auto", env=JOB) == chosen
    assert resolve_launcher("auto", env={}) == "local"


def test_lsf_launchers_outside_lsf_or_missing_are_clear_errors(tmp_path, monkeypatch):
    fake_path(tmp_path, monkeypatch, "jsrun")
    with pytest.raises(SpecError, match="launcher: 'jsrun' needs an LSF allocation \\(LSB_JOBID is not set here\\)"):
        resolve_launcher("jsrun", env={})
    with pytest.raises(SpecError, match="launcher: 'lrun' is not on PATH"):
        resolve_launcher("lrun", env=JOB)
    assert resolve_launcher("jsrun", env=JOB) == "jsrun"


def test_lsf_backend_reads_the_job_and_refuses_device_ids(monkeypatch):
    monkeypatch.setenv("LSB_JOBID", "4242")
    monkeypatch.setenv("LSB_MCPU_HOSTS", "batch1 1 lassen12 40")
    backend = choose_backend("lrun", None, None, 4)
    assert isinstance(backend.launcher, LrunLauncher)
    assert backend.provider.nodes() == (Node("lassen12", tuple(range(40)), ("0", "1", "2", "3")),)
    assert isinstance(choose_backend("jsrun", None, None, None).launcher, JsrunLauncher)
    with pytest.raises(SpecError, match="gpus: device ids \\['0'\\] .* GPU count of each host"):
        choose_backend("jsrun", None, None, ["0"])

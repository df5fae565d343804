"""The Flux executor and provider driven by the engine, against the fake Flux of ``fakeflux.py``.

No flux-core can be installed here, so Flux itself is a stand-in (a mock, said so in
docs/hpc.rst); everything of ensemble's is real: the engine, its reactor, the executor, the
store, and the steps, which run as real processes with the jobspec's directory, environment
and output files.  ``test_flux_real.py`` runs the same against a real Flux where one exists.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import fakeflux
import pytest
from engine_helpers import GUARD_MINUTES, create, long_sleep, py, run, sh, token

from ensemble import CompositeRun, Ensemble, Step
from ensemble.alloc.execution import execute_local
from ensemble.engine import EXIT_WORK_LEFT
from ensemble.errors import SpecError
from ensemble.executors.base import Launch
from ensemble.flux.executor import FluxExecutor
from ensemble.flux.instance import FluxProvider
from ensemble.providers.resources import Placement, Share


def _install(monkeypatch, instance: fakeflux.Instance) -> None:
    for name, module in fakeflux.module(instance).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("FLUX_URI", "local:///tmp/fake-flux/local-0")
    # The stand-in instance lives in this process's threads: the engine must run here too, not in
    # a forked process under a keeper (a real Flux is a separate service).
    monkeypatch.setenv("ENSEMBLE_KEEPER", "0")


@pytest.fixture
def flux(monkeypatch, tmp_path):
    """A fake instance of two 4-core nodes with 2 GPUs each, entered as a Flux job would be."""
    monkeypatch.chdir(tmp_path)
    instance = fakeflux.Instance([("n1", 4, 2), ("n2", 4, 2)])
    _install(monkeypatch, instance)
    yield instance
    instance.stop()


def execute(ens: Ensemble, **options) -> int:
    options = {"timeout": GUARD_MINUTES, "parallelism": None, "allow_multiple": False, "max_concurrency": None,
               "cores": None, "gpus": None, **options}
    return execute_local(ens.setup_dir, ens.store, blocking=True, in_process=True, **options)


def job_of(instance: fakeflux.Instance, run_id: int) -> dict:
    return next(s for s in instance.submitted if s["attributes"]["system"]["environment"]["ENSEMBLE_RUN_ID"]
                == str(run_id))


def test_hundred_runs_with_mixed_cores_gpus_and_a_timeout(flux):
    runs = [CompositeRun({"x": k}, [Step(["sh", "-c", 'echo "run $ENSEMBLE_RUN_ID on $FLUX_JOB_ID"'],
                                         batch_script=False, cores_per_task=1 + k % 3,
                                         gpus_per_task=1 if k % 10 == 0 else 0)])
            for k in range(99)]
    runs.append(run(99, sh(long_sleep(token()), timeout=0.02)))
    ens = create(runs, use_flux=True)
    assert execute(ens) == 3, "one run failed (its timeout)"
    df = ens.as_dataframe()
    assert (df.loc[df.index != 100, "status"] == "success").all()
    assert df.loc[100, "status"] == "failure"
    attempts = ens.store.attempts()
    assert len(attempts) == 100
    assert all(a["job"] and a["job"].startswith("f") for a in attempts), "every attempt records its job id"
    assert len({a["job"] for a in attempts}) == 100
    timed_out = next(a for a in attempts if a["run_id"] == 100)
    assert timed_out["outcome"] == "timeout"
    for k in (1, 2, 3, 11):
        spec = job_of(flux, k)
        slot = spec["resources"][0]
        assert slot["type"] == "slot" and slot["count"] == 1
        counts = {w["type"]: w["count"] for w in slot["with"]}
        assert counts == {"core": 1 + (k - 1) % 3, **({"gpu": 1} if (k - 1) % 10 == 0 else {})}
        system = spec["attributes"]["system"]
        assert system["cwd"] == str(ens.store.runs([k])[0]["run_dir"])
        assert system["job"]["name"].endswith(f"/{k}.1")
        out = system["shell"]["options"]["output"]["stdout"]["path"]
        assert out.endswith(f"runs/{k}/ensemble.step0.attempt1.out")
        assert Path(out).read_text().startswith(f"run {k} on ")
        assert system["environment"]["OMP_NUM_THREADS"] == str(1 + (k - 1) % 3)
    assert job_of(flux, 100)["attributes"]["system"]["duration"] == 2 + 60
    assert all(j.state == "inactive" for j in flux.jobs.values()), "nothing left running in Flux"


def test_gpu_steps_leave_device_binding_to_flux(flux):
    ens = create([run(0, sh("true", gpus_per_task=1)), run(1, sh("true"))], use_flux=True)
    assert execute(ens) == 0
    gpu_env = job_of(flux, 1)["attributes"]["system"]["environment"]
    plain_env = job_of(flux, 2)["attributes"]["system"]["environment"]
    assert "CUDA_VISIBLE_DEVICES" not in gpu_env or gpu_env["CUDA_VISIBLE_DEVICES"] == os.environ.get(
        "CUDA_VISIBLE_DEVICES"), "the launcher sets no device ids for a GPU step"
    assert plain_env["CUDA_VISIBLE_DEVICES"] == "", "a step without GPUs sees none"


def test_exit_codes_signals_and_restarts_map_as_for_local_steps(flux):
    ens = create([run(0, sh("exit 7")), run(1, sh("kill -USR1 $$")), run(2, py("import sys; sys.exit(0)"))],
                 use_flux=True)
    assert execute(ens) == 3
    by_run = {a["run_id"]: a for a in ens.store.attempts()}
    assert (by_run[1]["exit_code"], by_run[1]["signal"]) == (7, None)
    assert (by_run[2]["exit_code"], by_run[2]["signal"]) == (None, signal.SIGUSR1)
    assert by_run[3]["exit_code"] == 0


def test_multi_node_step_asks_flux_for_nodes(flux):
    ens = create([run(0, sh("true", tasks=6, cores_per_task=1))], use_flux=True)
    assert execute(ens) == 0
    spec = job_of(flux, 1)
    assert spec["resources"][0]["type"] == "node" and spec["resources"][0]["count"] == 2
    assert spec["tasks"][0]["count"] == {"per_slot": 1}
    assert len(flux.jobs[next(iter(flux.jobs))].procs) == 6, "six tasks ran"


def test_dequeue_kills_the_running_job(flux, tmp_path):
    tok, gate = token(), tmp_path / "started"
    dequeue = [sys.executable, "-m", "ensemble", "--setup-dir", str(tmp_path / "setup"), "dequeue", "2"]
    ens = create([run(0, Step(["sh", "-c", f'while [ ! -e {gate} ]; do sleep 0.05; done; "$@"', "sh", *dequeue],
                              batch_script=False)),
                  run(1, sh(f"touch {gate}; {long_sleep(tok)}"))], use_flux=True)
    code = execute(ens)
    statuses = ens.as_dataframe()["status"].to_dict()
    assert statuses == {1: "success", 2: "killed"}
    assert code == 0, "a dequeued run is not a failure"
    job = next(j for j in flux.jobs.values() if j.name.endswith("/2.1"))
    attempt = next(a for a in ens.store.attempts() if a["run_id"] == 2)
    assert (attempt["signal"], attempt["outcome"]) == (signal.SIGTERM, "killed"), "SIGTERM to its tasks first"
    assert all(p.poll() is not None for p in job.procs), "the job's tasks are gone"


def test_allocation_end_interrupts_jobs_and_leaves_runs_queued(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    instance = fakeflux.Instance([("n1", 2, 0)], expiration=time.time() + 10 + 1 + 3)
    _install(monkeypatch, instance)
    try:
        ens = create([run(0, sh(long_sleep(token())))], use_flux=True)
        assert execute(ens, kill_grace=1, timeout=None) == EXIT_WORK_LEFT
        assert ens.as_dataframe()["status"].tolist() == ["queued"]
        assert [a["outcome"] for a in ens.store.attempts()] == ["interrupted"]
        assert all(j.state == "inactive" for j in instance.jobs.values())
    finally:
        instance.stop()


def test_provider_reads_the_instances_resources_and_end(monkeypatch, tmp_path):
    end = time.time() + 3600
    instance = fakeflux.Instance([("a", 4, 2), ("b", 8, 0)], expiration=end)
    _install(monkeypatch, instance)
    try:
        nodes = FluxProvider().nodes()
        assert [(n.name, n.cores, n.gpus) for n in nodes] == [("a", (0, 1, 2, 3), ("0", "1")),
                                                             ("b", tuple(range(8)), ())]
        assert FluxProvider(cores=2, gpus=1).nodes()[0].cores == (0, 1)
        assert FluxProvider().end_time() == pytest.approx(end)
    finally:
        instance.stop()


def test_test_instance_brokers_on_one_host_keep_their_own_nodes(monkeypatch):
    instance = fakeflux.Instance([("host", 2, 0), ("host", 2, 0)])
    _install(monkeypatch, instance)
    try:
        assert [n.name for n in FluxProvider().nodes()] == ["host:0", "host:1"]
    finally:
        instance.stop()


def _launch(tmp_path: Path, cores: int, argv: list[str]) -> Launch:
    step = Step(argv, batch_script=False, cores_per_task=cores)
    out, err = str(tmp_path / "o"), str(tmp_path / "e")
    return Launch(1, 0, 1, step, Placement((Share("n1", 1, tuple(range(cores)), ()),)), argv, str(tmp_path), {},
                  out, err, "m/1.1")


def _wait_ended(executor: FluxExecutor) -> list:
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(executor.fd, selectors.EVENT_READ)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            selector.select(1.0)
            ended = executor.on_readable(executor.fd)
            if ended:
                return ended
    raise AssertionError("no job ended")


def test_a_job_flux_refuses_is_a_start_error(flux, tmp_path):
    executor = FluxExecutor()
    handle = executor.start(_launch(tmp_path, 16, ["true"]))
    executor.flush()
    assert _wait_ended(executor) == [handle]
    assert executor.start_error(handle) == "flux refused the job: unsatisfiable request"
    assert executor.take_job_ids() == []


def test_flux_own_timeout_ends_the_job_as_sigalrm(flux, tmp_path):
    executor = FluxExecutor()
    handle = executor.start(_launch(tmp_path, 1, ["sleep", "30"]))
    spec = json.loads(handle.spec)
    spec["attributes"]["system"]["duration"] = 0.5
    handle.spec = json.dumps(spec)
    executor.flush()
    assert _wait_ended(executor) == [handle]
    assert executor.reap(handle) == -signal.SIGALRM
    assert [(h is handle, j.startswith("f")) for h, j in executor.take_job_ids()] == [(True, True)]


def test_submission_ahead_is_limited(flux, tmp_path):
    executor = FluxExecutor(ahead=3)
    assert executor.start_room() == 3
    handles = [executor.start(_launch(tmp_path, 1, ["true"])) for _ in range(3)]
    assert executor.start_room() == 0, "three submitted, none started"
    executor.flush()
    ended: list = []
    while len(ended) < 3:
        ended += _wait_ended(executor)
    assert sorted(map(id, ended)) == sorted(map(id, handles))
    assert executor.start_room() == 3


def test_leftover_jobs_of_a_dead_manager_are_cancelled(flux, tmp_path):
    executor = FluxExecutor()
    executor.start(_launch(tmp_path, 1, ["sleep", "30"]))
    executor.flush()
    deadline = time.monotonic() + 30
    while not any(j.state == "running" for j in flux.jobs.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert FluxExecutor().kill_leftovers(["other"]) == 0
    assert FluxExecutor().kill_leftovers(["m"]) == 1
    assert _wait_ended(executor)[0].code == -signal.SIGTERM


def test_use_flux_without_an_instance_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLUX_URI", raising=False)
    ens = create([run(0, sh("true"))], use_flux=True)
    before = sorted(p.name for p in ens.setup_dir.rglob("*"))
    with pytest.raises(SpecError, match=r"use_flux: steps run as Flux jobs, but no Flux instance is here"):
        execute(ens)
    assert sorted(p.name for p in ens.setup_dir.rglob("*")) == before
    assert execute(ens, launcher="local") == 0, "an explicit launcher overrides use_flux"

"""Slurm pieces that need no Slurm: reading the allocation's descriptions, the step-rate limit."""
from __future__ import annotations

import os
import time

import pytest

from ensemble import Step
from ensemble.errors import EnsembleError, SpecError
from ensemble.executors import Launch, SrunExecutor
from ensemble.providers.resources import Node, Pool
from ensemble.providers.slurm import _epoch, parse_cpus_per_node, parse_index_list, parse_job_record

RECORD = ("JobId=42 JobName=ens JobState=RUNNING TimeLimit=00:05:00 StartTime=2026-12-02T00:55:45 "
          "EndTime=2026-12-02T01:00:45 NodeList=node[1-3] NumNodes=3 "
          "JOB_GRES=gpu:6 Nodes=node[1-2] CPU_IDs=0-7 Mem=0 GRES=gpu:a100:2(IDX:0-1) "
          "Nodes=node3 CPU_IDs=0-3 Mem=0 GRES=gpu:2(IDX:0,2) MinCPUsNode=1 Features=(null)")


@pytest.mark.parametrize("value, nodes, expected", [
    ("36(x2),20", 3, [36, 36, 20]),
    ("8", 1, [8]),
    ("4(x3)", 3, [4, 4, 4]),
    ("2,3,4", 3, [2, 3, 4]),
])
def test_cpus_per_node_forms(value, nodes, expected):
    assert parse_cpus_per_node(value, nodes) == expected


@pytest.mark.parametrize("value, nodes", [("36(x2),20", 2), ("abc", 1), ("", 1)])
def test_cpus_per_node_that_does_not_match_the_job_is_a_clear_error(value, nodes):
    with pytest.raises(EnsembleError, match="SLURM_JOB_CPUS_PER_NODE"):
        parse_cpus_per_node(value, nodes)


def test_gpu_index_lists():
    assert parse_index_list("0-1,3") == ["0", "1", "3"]
    assert parse_index_list("5") == ["5"]
    assert parse_index_list("") == []


def test_job_record_keeps_every_node_group_in_order():
    record = parse_job_record(RECORD)
    assert record["Nodes"] == "node[1-2];node3"
    assert record["GRES"] == "gpu:a100:2(IDX:0-1);gpu:2(IDX:0,2)"
    assert record["CPU_IDs"] == "0-7;0-3"
    assert record["NodeList"] == "node[1-3]"
    assert _epoch(record["EndTime"]) - _epoch(record["StartTime"]) == 300


def test_end_time_unknown_or_unlimited_is_none():
    assert _epoch("Unknown") is None
    assert _epoch(None) is None


def _launch(tmp_path, k: int) -> Launch:
    pool = Pool((Node("n", (0, 1, 2, 3)),))
    return Launch(k, 0, 1, Step(["true"], batch_script=False), pool.allocate(1, 1, 0), ["true"], str(tmp_path),
                  {}, str(tmp_path / f"{k}.out"), str(tmp_path / f"{k}.err"), f"test/{k}")


def test_srun_executor_holds_starts_back_to_its_rate(tmp_path):
    executor = SrunExecutor(rate=0.001, burst=3)
    executor.set_base_env(dict(os.environ))
    try:
        assert executor.start_room() == 3 and executor.next_start() is None
        handles = [executor.start(_launch(tmp_path, k)) for k in range(3)]
        assert executor.start_room() == 0
        assert executor.next_start() > time.monotonic() + 100, "the next token is ~1000 s away at 0.001/s"
        for handle in handles:
            os.waitid(os.P_PID, handle.pid, os.WEXITED | os.WNOWAIT)
            assert executor.reap(handle) == 0
    finally:
        executor.close()


def test_use_flux_without_an_instance_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.delenv("FLUX_URI", raising=False)
    from ensemble import Ensemble, Run

    ens = Ensemble.create(runs=[Run({"x": 1})], application="/bin/true", setup_dir=tmp_path / "s",
                          use_flux=True, app_is_batch_script=False)
    with pytest.raises(SpecError, match="use_flux: steps run as Flux jobs, but no Flux instance is here"):
        ens.execute_local(blocking=True)
    assert ens.attempts() == [] and not (tmp_path / "s" / "logs" / "manager.log").exists()


def test_a_failing_slurm_command_is_tried_again_then_named(tmp_path, monkeypatch):
    from ensemble.providers import slurm

    calls = tmp_path / "calls"
    fake = tmp_path / "scontrol"  # a stand-in that fails twice then answers, counting its calls
    fake.write_text(f'#!/bin/sh\necho x >> {calls}\n[ "$(wc -l < {calls})" -ge 3 ] && echo node1 && exit 0\n'
                    'echo "slurm_load_jobs error: Socket timed out" >&2; exit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(slurm, "SLURM_RETRY_DELAYS", (0.0, 0.0))
    assert slurm.slurm_command([str(fake), "show", "hostnames", "node1"]) == "node1\n"
    assert calls.read_text().count("x") == 3
    calls.unlink()
    monkeypatch.setattr(slurm, "SLURM_RETRY_DELAYS", (0.0,))
    with pytest.raises(EnsembleError, match="slurm: .*scontrol show hostnames node1 failed \\(1\\): slurm_load_jobs"):
        slurm.slurm_command([str(fake), "show", "hostnames", "node1"])
    with pytest.raises(EnsembleError, match="slurm: /nonexistent/scontrol is not on PATH"):
        slurm.slurm_command(["/nonexistent/scontrol"])


def test_detection_never_crashes_without_the_resource_managers_commands(tmp_path, monkeypatch):
    from ensemble.alloc.backends import resolve_launcher

    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, scontrol, flux, mpirun here
    job = {"SLURM_JOB_ID": "42"}
    assert resolve_launcher("auto", env=job, queued=10 ** 6) == "local"
    for name in ("srun", "worker", "mpirun"):
        with pytest.raises(SpecError, match=f"launcher: '{name}'"):
            resolve_launcher(name, env=job)

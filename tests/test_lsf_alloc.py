"""Reading an LSF allocation from its environment (no LSF here: environment dicts as LSF sets them)."""
from __future__ import annotations

import pytest

from ensemble.errors import EnsembleError, SpecError, SpecTypeError
from ensemble.providers import LsfProvider
from ensemble.providers.lsf import parse_mcpu_hosts
from ensemble.providers.resources import Node
from ensemble.providers.where import in_lsf_job

CORAL = {"LSB_JOBID": "4242", "LSB_MCPU_HOSTS": "batch1 1 lassen12 40 lassen13 40"}


def test_in_lsf_job_needs_lsb_jobid():
    assert in_lsf_job(CORAL) and not in_lsf_job({}) and not in_lsf_job({"LSB_JOBID": ""})


def test_the_launch_node_is_left_out_when_compute_hosts_follow():
    assert parse_mcpu_hosts("batch1 1 lassen12 40 lassen13 40") == [("lassen12", 40), ("lassen13", 40)]


def test_a_single_host_job_keeps_its_host():
    assert parse_mcpu_hosts("node7 16") == [("node7", 16)]


@pytest.mark.parametrize("value", ["", "batch1", "batch1 1 lassen12", "batch1 x", "a 1 b 0"])
def test_a_bad_mcpu_hosts_names_the_variable_and_value(value):
    with pytest.raises(EnsembleError, match="^LSB_MCPU_HOSTS: ") as info:
        parse_mcpu_hosts(value)
    assert repr(value) in str(info.value)


def test_nodes_cores_and_gpus():
    assert LsfProvider(env=CORAL).nodes() == (Node("lassen12", tuple(range(40)), ()),
                                               Node("lassen13", tuple(range(40)), ()))
    assert LsfProvider(cores=4, gpus=4, env=CORAL).nodes() == (
        Node("lassen12", (0, 1, 2, 3), ("0", "1", "2", "3")), Node("lassen13", (0, 1, 2, 3), ("0", "1", "2", "3")))


def test_the_job_is_described_without_an_end_time():
    provider = LsfProvider(env=CORAL)
    assert provider.end_time() is None
    assert provider.describe() == {"provider": "lsf", "job_id": "4242", "end_time": None}


@pytest.mark.parametrize(("options", "error", "field"), [
    (dict(gpus=-1), SpecError, "gpus"), (dict(gpus="4"), SpecTypeError, "gpus"), (dict(cores=0), SpecError, "cores")])
def test_bad_counts_name_their_field(options, error, field):
    with pytest.raises(error, match=f"^{field}: "):
        LsfProvider(env=CORAL, **options).nodes()

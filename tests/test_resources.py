"""Resources: packing steps onto nodes (fewest nodes, best fit), release, GPU detection and the local provider.

No GPU exists on the test machines: detection is exercised with ``*_VISIBLE_DEVICES`` set through
monkeypatch, with fake ``nvidia-smi``/``rocm-smi`` shell scripts put first (and alone) on ``PATH``, and
with fake ``dev/nvidia<N>`` files under a temporary ``dev_root``.
"""
from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from conftest import write_script

from ensemble.alloc.execution import options_spec
from ensemble.errors import SpecError, SpecTypeError
from ensemble.providers import LocalProvider, resources
from ensemble.providers.resources import NOTHING_FOUND, Node, Pool, detect_gpus, parse_visible_devices

NVIDIA_SMI_L = """\
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5d5ba0d6-d33d-2b2c-524d-9e3d8d2b8a39)
  MIG 3g.20gb     Device  0: (UUID: MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f)
  MIG 3g.20gb     Device  1: (UUID: MIG-cba663e8-9bed-5b25-b243-5985ef7c9beb)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-e91edf3b-b297-37c1-a2a7-7601c98f4c19)
"""
ROCM_SMI_SHOWID = """\
============================ ROCm System Management Interface ============================
=========================================== ID ===========================================
GPU[0]\t\t: Device Name: \t\tAldebaran/MI200 [Instinct MI250X/MI250]
GPU[0]\t\t: Device ID: \t\t0x740c
GPU[1]\t\t: Device Name: \t\tAldebaran/MI200 [Instinct MI250X/MI250]
GPU[1]\t\t: Device ID: \t\t0x740c
==========================================================================================
================================== End of ROCm SMI Log ===================================
"""

#: Fake tools run with ``PATH`` set to their own directory only; they find ``cat``/``sleep`` through this.
SCRIPT_PATH = "PATH=/usr/bin:/bin"


def node(name: str, cores: int, gpus: tuple[str, ...] = ()) -> Node:
    return Node(name, tuple(range(cores)), gpus)


def free(pool: Pool) -> dict[str, tuple[int, int]]:
    return {name: (len(pool.free_cores[name]), len(pool.free_gpus[name])) for name in pool.free_cores}


# -- packing -------------------------------------------------------------------------------------
def test_a_step_that_fits_one_node_goes_whole_to_the_tightest_node():
    pool = Pool((node("big", 8), node("mid", 4), node("small", 2)))
    placement = pool.allocate(3, 1, 0)
    assert placement.nodes == ("mid",)
    assert placement.cores == (0, 1, 2)
    assert pool.allocate(2, 1, 0).nodes == ("small",)
    assert pool.allocate(1, 1, 0).nodes == ("mid",)
    assert free(pool) == {"big": (8, 0), "mid": (0, 0), "small": (0, 0)}


def test_gpu_steps_prefer_the_node_with_fewest_free_gpus_and_cpu_steps_the_fewest_free_cores():
    pool = Pool((node("quad", 8, ("0", "1", "2", "3")), node("single", 8, ("GPU-aa",)), node("cpu", 16)))
    assert pool.allocate(1, 1, 1).gpus == ("GPU-aa",)
    assert pool.allocate(1, 1, 1).nodes == ("quad",)
    assert pool.allocate(1, 1, 0).nodes == ("single",)


def test_a_wide_step_spans_the_fewest_nodes_and_its_remainder_goes_best_fit():
    pool = Pool((node("a", 2), node("b", 2), node("c", 8), node("d", 4)))
    placement = pool.allocate(10, 1, 0)
    assert len(placement.shares) == 2
    assert [(s.node, s.tasks) for s in placement.shares] == [("c", 8), ("a", 2)]
    assert free(pool) == {"a": (0, 0), "b": (2, 0), "c": (0, 0), "d": (4, 0)}


def test_tasks_never_straddle_nodes_and_gpu_ids_are_the_nodes_own_strings():
    nodes = (node("n0", 3, ("MIG-x", "MIG-y")), node("n1", 3, ("2", "3")), node("n2", 3, ("GPU-z",)))
    pool = Pool(nodes)
    placement = pool.allocate(3, 2, 1)
    assert sorted(placement.nodes) == ["n0", "n1", "n2"]
    for share in placement.shares:
        owner = next(n for n in nodes if n.name == share.node)
        assert share.tasks == 1
        assert len(share.cores) == 2 and set(share.cores) <= set(owner.cores)
        assert len(share.gpus) == 1 and set(share.gpus) <= set(owner.gpus)
    assert sorted(placement.gpus) == ["2", "GPU-z", "MIG-x"]
    assert json.loads(json.dumps(placement.to_list())) == placement.to_list()
    assert free(pool) == {"n0": (1, 1), "n1": (1, 1), "n2": (1, 0)}
    assert pool.allocate(1, 2, 0) is None, "three cores are free, but a task of 2 cores may not span nodes"


def test_a_step_that_does_not_fit_now_takes_nothing():
    pool = Pool((node("a", 4, ("0",)), node("b", 4)))
    assert pool.allocate(2, 1, 1) is None
    assert pool.allocate(3, 3, 0) is None
    assert free(pool) == {"a": (4, 1), "b": (4, 0)}


def test_release_returns_cores_and_gpus_in_node_order_for_reuse():
    pool = Pool((node("a", 4, ("10", "2", "MIG-1")),))
    first, second, third = (pool.allocate(1, 1, 1) for _ in range(3))
    assert (first.gpus, second.gpus, third.gpus) == (("10",), ("2",), ("MIG-1",))
    assert pool.allocate(1, 1, 1) is None
    pool.release(third)
    pool.release(first)
    assert pool.free_gpus["a"] == ["10", "MIG-1"]
    again = pool.allocate(2, 1, 1)
    assert again.gpus == ("10", "MIG-1") and again.cores == (0, 2)
    pool.release(second)
    pool.release(again)
    assert free(pool) == {"a": (4, 3)}


def test_a_double_release_raises_and_changes_nothing():
    pool = Pool((node("a", 4, ("0", "1")),))
    placement = pool.allocate(1, 2, 1)
    pool.release(placement)
    with pytest.raises(ValueError, match="placement: not held"):
        pool.release(placement)
    assert free(pool) == {"a": (4, 2)}
    assert sorted(pool.free_cores["a"]) == [0, 1, 2, 3]


def test_releasing_a_stale_placement_after_its_cores_were_reused_raises():
    pool = Pool((node("a", 2),))
    old = pool.allocate(1, 2, 0)
    pool.release(old)
    new = pool.allocate(1, 2, 0)
    assert new == old and new is not old
    with pytest.raises(ValueError, match="placement"):
        pool.release(old)
    assert pool.allocate(1, 1, 0) is None, "the stale release must not free cores the new placement holds"
    pool.release(new)


def test_can_ever_fit_counts_whole_tasks_per_node():
    pool = Pool((node("a", 4, ("0", "1")), node("b", 4)))
    assert pool.can_ever_fit(2, 2, 1)
    assert not pool.can_ever_fit(3, 2, 1)
    assert pool.can_ever_fit(4, 2, 0)
    assert not pool.can_ever_fit(1, 5, 0)
    assert pool.can_ever_fit(2, 3, 0)
    assert not pool.can_ever_fit(3, 3, 0)
    placement = pool.allocate(2, 2, 1)
    assert pool.can_ever_fit(2, 2, 1), "can_ever_fit judges the empty allocation, not what is free now"
    pool.release(placement)


@pytest.mark.parametrize("gpus", [("0", "0"), ("",), ("0,1",), (0,)])
def test_node_rejects_bad_gpu_ids(gpus):
    with pytest.raises(ValueError, match="Node.gpus"):
        Node("a", (0,), gpus)


# -- detection -----------------------------------------------------------------------------------
@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``*_VISIBLE_DEVICES``, and a ``PATH`` holding only a fresh ``bin`` directory (returned)."""
    for var in resources.VISIBLE_DEVICES_VARS:
        monkeypatch.delenv(var, raising=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def fake_tool(bin_dir: Path, name: str, output: str, code: int = 0) -> None:
    """A fake ``nvidia-smi``/``rocm-smi``: prints ``output``, exits ``code`` (no GPU exists here)."""
    write_script(bin_dir / name, f"#!/bin/sh\n{SCRIPT_PATH}\ncat <<'EOF'\n{output}EOF\nexit {code}\n")


def fake_dev(root: Path, *names: str) -> Path:
    """A fake device directory ``root/dev`` with empty files named ``names``."""
    (root / "dev").mkdir(parents=True)
    for name in names:
        (root / "dev" / name).touch()
    return root


@pytest.mark.parametrize(("value", "ids"), [
    ("2,3", ("2", "3")),
    ("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", ("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f",)),
    ("GPU-5d5ba0d6, 1", ("GPU-5d5ba0d6", "1")),
    ("", ()),
    ("-1", ()),
    ("NoDevFiles", ()),
    ("2,-1,3", ("2",)),
])
def test_visible_devices_values(value, ids):
    assert parse_visible_devices(value) == ids


def test_visible_devices_variables_win_in_order_even_when_empty(bare, tmp_path, monkeypatch):
    fake_tool(bare, "nvidia-smi", NVIDIA_SMI_L)
    monkeypatch.setenv("HIP_VISIBLE_DEVICES", "5")
    assert detect_gpus(tmp_path) == (("5",), "HIP_VISIBLE_DEVICES=5")
    monkeypatch.setenv("ROCR_VISIBLE_DEVICES", "GPU-4b2c,GPU-9f1e")
    assert detect_gpus(tmp_path) == (("GPU-4b2c", "GPU-9f1e"), "ROCR_VISIBLE_DEVICES=GPU-4b2c,GPU-9f1e")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert detect_gpus(tmp_path) == (("2", "3"), "CUDA_VISIBLE_DEVICES=2,3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert detect_gpus(tmp_path) == ((), "CUDA_VISIBLE_DEVICES=")


def test_nvidia_smi_gives_physical_gpu_indices_not_mig_instances(bare, tmp_path):
    fake_tool(bare, "nvidia-smi", NVIDIA_SMI_L)
    fake_tool(bare, "rocm-smi", ROCM_SMI_SHOWID)
    assert detect_gpus(fake_dev(tmp_path, "nvidia0")) == (("0", "1"), "nvidia-smi -L")


@pytest.mark.parametrize("broken", ["exit", "garbage", "not executable", "hangs"])
def test_a_broken_nvidia_smi_falls_through_to_the_device_files(bare, tmp_path, monkeypatch, broken):
    if broken == "exit":
        fake_tool(bare, "nvidia-smi", "NVIDIA-SMI has failed because it couldn't communicate with the driver\n", 9)
    elif broken == "garbage":
        fake_tool(bare, "nvidia-smi", "No devices were found\n")
    elif broken == "not executable":
        write_script(bare / "nvidia-smi", "#!/bin/sh\necho 'GPU 0: x'\n", mode=0o644)
    else:
        monkeypatch.setattr(resources, "PROBE_TIMEOUT", 0.2)
        write_script(bare / "nvidia-smi", f"#!/bin/sh\n{SCRIPT_PATH}\nexec sleep 60\n")
    root = fake_dev(tmp_path, "nvidia10", "nvidia2", "nvidiactl", "nvidia-uvm", "nvidia-modeset")
    ids, source = detect_gpus(root)
    assert ids == ("2", "10")
    assert source == str(root / "dev" / "nvidia<N>")


def test_rocm_smi_is_the_last_probe(bare, tmp_path):
    fake_tool(bare, "rocm-smi", ROCM_SMI_SHOWID)
    assert detect_gpus(fake_dev(tmp_path, "kfd", "dri")) == (("0", "1"), "rocm-smi --showid")


def test_nothing_found(bare, tmp_path):
    fake_tool(bare, "rocm-smi", "WARNING: No AMD GPUs specified\n", 2)
    assert detect_gpus(fake_dev(tmp_path)) == ((), NOTHING_FOUND)


# -- the local provider --------------------------------------------------------------------------
def provider_gpus(gpus: object, root: Path) -> tuple[str, ...]:
    [only] = LocalProvider(cores=1, gpus=gpus, dev_root=str(root)).nodes()
    return only.gpus


def test_provider_takes_the_detected_ids_and_logs_where_they_came_from(bare, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with caplog.at_level(logging.INFO, logger="ensemble"):
        assert provider_gpus(None, tmp_path) == ("2", "3")
    assert "gpus: 2 from CUDA_VISIBLE_DEVICES=2,3" in caplog.messages
    assert provider_gpus(1, tmp_path) == ("2",)
    assert provider_gpus(2, tmp_path) == ("2", "3")
    assert provider_gpus(0, tmp_path) == ()


def test_provider_refuses_more_gpus_than_detected(bare, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(SpecError, match=r"gpus: 3 requested but 2 found here \(CUDA_VISIBLE_DEVICES=2,3\)"):
        provider_gpus(3, tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(SpecError, match="gpus: 1 requested but 0 found"):
        provider_gpus(1, tmp_path)


def test_provider_assumes_indices_when_nothing_at_all_was_detected(bare, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ensemble"):
        assert provider_gpus(3, fake_dev(tmp_path)) == ("0", "1", "2")
    assert any("none detected" in m for m in caplog.messages)


def test_provider_takes_exact_ids_without_detection(bare, tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert provider_gpus(["MIG-a", "GPU-b", "7"], tmp_path) == ("MIG-a", "GPU-b", "7")
    assert provider_gpus(("1",), tmp_path) == ("1",)


@pytest.mark.parametrize(("gpus", "error", "words"), [
    (-1, SpecError, ["gpus", "-1"]),
    (True, SpecTypeError, ["gpus", "True"]),
    ("2", SpecTypeError, ["gpus", "'2'"]),
    (1.0, SpecTypeError, ["gpus", "1.0"]),
    (["0,1"], SpecError, ["gpus", "'0,1'"]),
    ([""], SpecError, ["gpus", "''"]),
    (["a\0b"], SpecError, ["gpus", "'a\\x00b'"]),
    ([0], SpecError, ["gpus", "0"]),
    (["1", "1"], SpecError, ["gpus", "distinct", "'1'"]),
])
def test_bad_gpus_option_names_field_and_value(gpus, error, words):
    with pytest.raises(error) as info:
        options_spec(timeout=None, parallelism=None, allow_multiple=False, max_concurrency=None, cores=1, gpus=gpus)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_options_spec_passes_gpu_ids_as_json(bare):
    spec = options_spec(timeout=None, parallelism=None, allow_multiple=False, max_concurrency=None, cores=1,
                        gpus=("MIG-a", "3"))
    assert json.loads(json.dumps(spec))["gpus"] == ["MIG-a", "3"]


def test_a_gpu_tool_that_is_not_on_path_is_never_started(bare, tmp_path, monkeypatch):
    started = []
    def run(argv, **options):
        started.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "")

    monkeypatch.setattr(resources.subprocess, "run", run)
    assert detect_gpus(tmp_path) == ((), NOTHING_FOUND)
    assert started == []
    fake_tool(bare, "rocm-smi", "GPU[0]\t\t: GPU ID: 0x740f\n")
    detect_gpus(tmp_path)
    assert started == [["rocm-smi", "--showid"]]

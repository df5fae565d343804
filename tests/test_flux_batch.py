"""``flux batch`` scripts and submission, ``srun ... flux start`` inside Slurm, and which batch
system ``execute_alloc`` picks.

No Flux is installed here: ``flux`` is a fake script on PATH that records its argv and
environment (checked exactly, as docs/hpc.rst says).  The ``srun ... flux start`` line runs
through the real Slurm testbed, with the fake ``flux`` as the program srun starts on each node.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import create, run, sh, wait_for
from slurm_helpers import CPUS, DEADLINE

from ensemble.alloc import chain
from ensemble.errors import EnsembleError, SpecError
from ensemble.flux.batch import flux_start_line, render_flux_script, submit_flux
from ensemble.providers.sbatch import check_request, execute_argv

SETUP = Path("/p/lustre/study")


def fake(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_flux_batch_script_has_every_directive_and_the_execute_line():
    request = check_request(nodes=3, partition="pdebug", bank="physics", name="study", timeout=45)
    text = render_flux_script(SETUP, request)
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("#flux: ")] == [
        "#flux: --job-name=study", "#flux: -N 3", "#flux: --exclusive", "#flux: -t 45m", "#flux: -q pdebug",
        "#flux: --bank=physics", "#flux: --output='/p/lustre/study/logs/flux-{{id}}.out'",
        "#flux: --error='/p/lustre/study/logs/flux-{{id}}.out'"], "directives are split with shell quoting"
    assert [shlex.split(line)[1:] for line in lines if line.startswith("exec ")] == [execute_argv(SETUP, request)]
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_defaults_leave_time_queue_and_bank_to_flux():
    text = render_flux_script(SETUP, check_request())
    assert " -t " not in text and " -q " not in text and "--bank" not in text


def test_flux_start_line_runs_one_broker_per_node_with_all_its_cpus(tmp_path):
    flux = fake(tmp_path, "flux", "exit 0")
    request = check_request(nodes=4)
    line = flux_start_line(SETUP, request, str(flux))
    assert line == ('exec srun -N 4 --ntasks-per-node=1 -c "$SLURM_CPUS_ON_NODE" --mpi=none '
                    f"{flux} start " + shlex.join(execute_argv(SETUP, request)))
    assert flux_start_line(SETUP, request, True).split(" --mpi=none ")[1].startswith("flux start ")


def test_use_flux_must_name_an_executable(tmp_path):
    (tmp_path / "notexec").write_text("")
    for bad in (str(tmp_path / "missing"), str(tmp_path / "notexec")):
        with pytest.raises(SpecError, match=f"use_flux: expected the path of an executable flux command, got '{bad}'"):
            flux_start_line(SETUP, check_request(), bad)


def test_submit_runs_flux_batch_and_reads_the_ascii_job_id(tmp_path, monkeypatch):
    fake(tmp_path, "flux", f'echo "$@" > {tmp_path}/argv; echo "$FLUX_F58_FORCE_ASCII" > {tmp_path}/ascii; '
                           "echo fA1b2C3")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    script = tmp_path / "job.flux"
    script.write_text(render_flux_script(SETUP, check_request()))
    assert submit_flux(script) == "fA1b2C3"
    assert (tmp_path / "argv").read_text() == f"batch {script}\n"
    assert (tmp_path / "ascii").read_text() == "1\n"


def test_a_rejected_flux_job_quotes_flux(tmp_path, monkeypatch):
    fake(tmp_path, "flux", "echo 'flux-batch: ERROR: unsatisfiable request' >&2; exit 1")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    with pytest.raises(EnsembleError, match=r"flux batch rejected the job \(1\): flux-batch: ERROR: unsatisfiable"):
        submit_flux(tmp_path / "job.flux")


def test_a_missing_flux_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EnsembleError, match=r"flux: command not found \(is Flux installed on this machine\?\)"):
        submit_flux(tmp_path / "job.flux")


@pytest.mark.parametrize("commands, env, expected", [
    (("sbatch", "flux"), {}, "slurm"),
    (("bsub", "flux"), {}, "lsf"),
    (("flux",), {}, "flux"),
    ((), {}, "slurm"),
    (("sbatch",), {"FLUX_URI": "local:///run/flux/local"}, "flux"),
    (("sbatch", "flux"), {"ENSEMBLE_BATCH_SYSTEM": "flux"}, "flux"),
    (("flux",), {"ENSEMBLE_BATCH_SYSTEM": "slurm"}, "slurm"),
])
def test_batch_system_is_detected_without_running_anything(tmp_path, monkeypatch, commands, env, expected):
    for name in commands:
        fake(tmp_path, name, f"touch {tmp_path}/ran; exit 1")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.delenv("FLUX_URI", raising=False)
    monkeypatch.delenv("ENSEMBLE_BATCH_SYSTEM", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert chain.batch_system() == expected
    assert not (tmp_path / "ran").exists()


def test_an_unknown_batch_system_is_named(monkeypatch):
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "pbs")
    with pytest.raises(SpecError, match="ENSEMBLE_BATCH_SYSTEM: expected one of slurm, lsf, flux, got 'pbs'"):
        chain.batch_system()


def test_execute_alloc_submits_with_flux_batch_where_flux_is_the_batch_system(edir, monkeypatch):
    fake(edir, "flux", f'cp "$2" {edir}/submitted; echo fXyZ')
    monkeypatch.setenv("PATH", f"{edir / 'bin'}:/usr/bin:/bin")
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "flux")
    ens = create([run(0, sh("true"))])
    with pytest.raises(SpecError, match="repeats: follow-up allocations use Slurm's job dependencies; on FLUX"):
        ens.execute_alloc(nodes=2, timeout=10, repeats=1)
    assert not (ens.setup_dir / "batch").exists(), "nothing written for a refused request"
    assert ens.execute_alloc(nodes=2, timeout=10) == "fXyZ"
    script = ens.setup_dir / "batch" / "ensemble-1.flux"
    assert (edir / "submitted").read_text() == script.read_text()
    assert "#flux: -N 2\n" in script.read_text()


def test_use_flux_inside_slurm_starts_a_broker_on_every_node(edir, slurm, monkeypatch):
    """The batch script's ``srun ... flux start`` against the real Slurm: one broker per node,
    each with all the node's CPUs, and the manager's command line as flux start's program."""
    record = edir / "brokers"
    record.mkdir()
    flux = fake(edir, "flux", f'echo "$SLURM_PROCID $SLURMD_NODENAME $SLURM_CPUS_PER_TASK $*" '
                              f'> {record}/"$SLURM_PROCID"')
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:/usr/bin:/bin:/usr/sbin")
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    ens = create([run(0, sh("true"))], use_flux=str(flux))
    job = ens.execute_alloc(nodes=2, timeout=5)
    wait_for(lambda: job not in slurm.squeue(), f"job {job} to end", DEADLINE)
    lines = sorted(p.read_text().split(" ", 3) for p in record.iterdir())
    assert [line[0] for line in lines] == ["0", "1"]
    assert len({line[1] for line in lines}) == 2, "one broker on each of two nodes"
    assert {line[2] for line in lines} == {str(CPUS)}
    request = check_request(nodes=2, timeout=5)
    assert {line[3].strip() for line in lines} == {"start " + " ".join(execute_argv(ens.setup_dir, request))}


def test_use_flux_inside_lsf_is_refused_before_anything_is_written(edir, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "lsf")
    ens = create([run(0, sh("true"))], use_flux=True)
    with pytest.raises(SpecError, match="use_flux: starting Flux inside an LSF job is not built"):
        ens.execute_alloc(nodes=1, timeout=5)
    assert not (ens.setup_dir / "batch").exists()


def test_an_unknown_batch_system_name_leaves_nothing_behind(edir, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_BATCH_SYSTEM", "pbs")
    ens = create([run(0, sh("true"))])
    with pytest.raises(SpecError, match="ENSEMBLE_BATCH_SYSTEM"):
        ens.execute_alloc(nodes=1)
    assert not (ens.setup_dir / "batch").exists()

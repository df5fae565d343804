"""``execute_alloc`` and ``ensemble submit`` without Slurm: the batch script's text, argument
checks before anything is written, a missing ``sbatch``, and the chain records."""
from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
from conftest import snapshot
from engine_helpers import create, run, sh

from ensemble.cli import build_parser, main
from ensemble.errors import EnsembleError, SpecError, SpecTypeError
from ensemble.setup import allocations


@pytest.fixture
def ens(edir):
    return create([run(i, sh("true")) for i in range(1, 4)])


def files(ens) -> tuple[dict, int]:
    """The setup directory's files but the database's, and the number of recorded events."""
    tree = {k: v for k, v in snapshot(ens.setup_dir).items() if not k.startswith("ensemble.db")}
    return tree, len(ens.events())


def dry_run(ens, *options: str) -> str:
    done = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", str(ens.setup_dir), "submit",
                           "--dry-run", *options], capture_output=True, text=True, check=True)
    return done.stdout


def test_dry_run_prints_the_script_and_writes_nothing(ens):
    before = files(ens)
    text = dry_run(ens, "--nodes", "2", "--partition", "debug", "--bank", "physics", "--name", "study",
                   "--time", "30", "--repeats", "2", "--early-stop", "5", "--max-concurrency", "7", "--mpi", "pmix",
                   "--kill-grace", "1.5", "--logs", "combined", "--allow-multiple", "--launcher", "srun")
    assert files(ens) == before
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    sbatch = [line for line in lines if line.startswith("#SBATCH ")]
    log = f"{ens.setup_dir}/logs/slurm-%j.out"
    assert sbatch == ["#SBATCH --job-name=study", "#SBATCH --nodes=2", "#SBATCH --exclusive", "#SBATCH --time=30",
                      "#SBATCH --partition=debug", "#SBATCH --account=physics", f"#SBATCH --output={log}",
                      f"#SBATCH --error={log}"]
    execs = [line for line in lines if line.startswith("exec ")]
    assert len(execs) == 1
    argv = shlex.split(execs[0])[1:]
    assert argv[:5] == [sys.executable, "-m", "ensemble", "--setup-dir", str(ens.setup_dir)]
    args = build_parser().parse_args(argv[3:])
    assert (args.command, args.block, args.launcher, args.kill_grace, args.logs, args.max_concurrency,
            args.early_stop, args.mpi, args.allow_multiple, args.timeout) == \
        ("execute", True, "srun", 1.5, "combined", 7, 5.0, "pmix", True, None)
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_defaults_leave_time_partition_and_account_to_slurm(ens):
    text = dry_run(ens)
    assert "--time" not in text and "--partition" not in text and "--account" not in text
    assert "#SBATCH --nodes=1\n#SBATCH --exclusive\n" in text
    assert "#SBATCH --job-name=ensemble\n" in text


@pytest.mark.parametrize("options, error, field", [
    (dict(nodes=0), SpecError, "nodes"),
    (dict(nodes="2"), SpecTypeError, "nodes"),
    (dict(nodes=True), SpecTypeError, "nodes"),
    (dict(partition="de bug"), SpecError, "partition"),
    (dict(bank=7), SpecTypeError, "bank"),
    (dict(name="a\nb"), SpecError, "name"),
    (dict(timeout=0), SpecError, "timeout"),
    (dict(timeout=1.5), SpecTypeError, "timeout"),
    (dict(repeats=-1), SpecError, "repeats"),
    (dict(parallelism=0), SpecError, "parallelism"),
    (dict(early_stop=-1), SpecError, "early_stop"),
    (dict(timeout=10, early_stop=10), SpecError, "early_stop"),
    (dict(allow_multiple="yes"), SpecTypeError, "allow_multiple"),
    (dict(max_concurrency=1.5), SpecTypeError, "max_concurrency"),
    (dict(launcher="pbs"), SpecError, "launcher"),
    (dict(mpi="pm ix"), SpecError, "mpi"),
    (dict(kill_grace=-1), SpecError, "kill_grace"),
    (dict(log_layout="one"), SpecError, "log_layout"),
])
def test_bad_arguments_are_refused_before_anything_is_written(ens, options, error, field):
    before = files(ens)
    with pytest.raises(error, match=f"^{field}: "):
        ens.execute_alloc(**options)
    assert files(ens) == before


def test_launcher_is_checked_by_name_only(ens):
    # srun is not usable here (no job), but the batch job decides: the name alone is valid.
    assert "--launcher srun" in dry_run(ens, "--launcher", "srun")


def test_missing_sbatch_is_a_clear_error_and_leaves_no_script(ens, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(EnsembleError, match="sbatch: command not found"):
        ens.execute_alloc()
    assert not (ens.setup_dir / "batch").exists(), "the setup directory is left as it was"
    assert main(["--setup-dir", str(ens.setup_dir), "submit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ensemble: error: sbatch: command not found") and "Traceback" not in err
    assert allocations.chains(ens.store) == {}


def test_chain_records_follow_the_commands(ens):
    ens.submit_command(allocations.command("submitted", "10", "10", script="/s", repeats=2))
    ens.submit_command(allocations.command("follow_up", "10", "11", after="10"))
    assert allocations.find(ens.store, "11")[0] == "10"
    ens.submit_command(allocations.command("started", "10", "11"))
    ens.submit_command(allocations.command("follow_up", "10", "12", after="11"))
    ens.submit_command(allocations.command("cancelled", "10", "12", reason="done"))
    assert allocations.chains(ens.store) == {"10": {"current": "11", "pending": None, "repeats_left": 0,
                                                    "script": "/s", "jobs": ["10", "11", "12"]}}
    assert [e["kind"] for e in ens.events() if e["kind"].startswith("alloc_")] == [
        "alloc_submitted", "alloc_follow_up", "alloc_started", "alloc_follow_up", "alloc_cancelled"]
    assert allocations.find(ens.store, "12") is None
    with pytest.raises(EnsembleError, match="no allocation chain"):
        ens.submit_command(allocations.command("started", "99", "99"))


def test_follow_up_that_finds_nothing_queued_exits_at_once(ens, monkeypatch, capsys):
    from ensemble.alloc import chain

    ens.execute_local(blocking=True, launcher="local")
    ens.submit_command(allocations.command("submitted", "10", "10", script="/s", repeats=2))
    ens.submit_command(allocations.command("follow_up", "10", "11", after="10"))
    monkeypatch.setenv("SLURM_JOB_ID", "11")
    assert chain.run_in_job(ens, lambda: pytest.fail("the engine must not run")) == 0
    assert allocations.chains(ens.store)["10"] == {"current": "11", "pending": None, "repeats_left": 1,
                                                   "script": "/s", "jobs": ["10", "11"]}
    assert "no run is queued" in capsys.readouterr().err


def test_job_outside_any_chain_just_runs(ens, monkeypatch):
    from ensemble.alloc import chain

    monkeypatch.setenv("SLURM_JOB_ID", "12345")
    assert chain.run_in_job(ens, lambda: 7) == 7
    assert allocations.chains(ens.store) == {}


def test_early_stop_zero_means_no_early_stop(ens):
    assert "--early-stop" not in dry_run(ens, "--time", "60", "--early-stop", "0")
    assert "--early-stop 5\n" in dry_run(ens, "--time", "60", "--early-stop", "5")
    with pytest.raises(SpecError, match="^early_stop: "):
        ens.execute_alloc(early_stop=-1)

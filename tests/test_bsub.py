"""The LSF batch script and ``bsub < script`` (no LSF here: a fake bsub on PATH records its stdin)."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ensemble.errors import EnsembleError
from ensemble.providers.bsub import parse_bsub_output, render_lsf_script, submit_lsf
from ensemble.providers.sbatch import check_request, execute_argv

SETUP = Path("/p/lustre/study")


def test_script_has_every_bsub_line_and_the_execute_line():
    request = check_request(nodes=2, partition="pbatch", bank="physics", name="study", timeout=30, early_stop=5)
    text = render_lsf_script(SETUP, request)
    lines = text.splitlines()
    assert [line for line in lines if line.startswith("#BSUB ")] == [
        "#BSUB -J study", "#BSUB -nnodes 2", "#BSUB -W 30", "#BSUB -q pbatch", "#BSUB -G physics",
        "#BSUB -o /p/lustre/study/logs/lsf-%J.out", "#BSUB -e /p/lustre/study/logs/lsf-%J.out"]
    execs = [line for line in lines if line.startswith("exec ")]
    assert [shlex.split(line)[1:] for line in execs] == [execute_argv(SETUP, request)]
    assert execute_argv(SETUP, request)[:7] == [sys.executable, "-m", "ensemble", "--setup-dir", str(SETUP),
                                                "execute", "--block"]
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_defaults_leave_time_queue_and_bank_to_lsf():
    text = render_lsf_script(SETUP, check_request())
    assert "-W" not in text and "-q" not in text and "-G" not in text
    assert "#BSUB -J ensemble\n#BSUB -nnodes 1\n" in text


def test_job_id_comes_from_bsubs_answer():
    assert parse_bsub_output("Job <123> is submitted to queue <pbatch>.\n") == "123"
    with pytest.raises(EnsembleError, match="bsub: expected 'Job <id> is submitted ...', got 'Request aborted'"):
        parse_bsub_output("Request aborted\n")


def fake_bsub(tmp_path: Path, monkeypatch, body: str) -> None:
    bsub = tmp_path / "bin" / "bsub"
    bsub.parent.mkdir()
    bsub.write_text(f"#!/bin/sh\n{body}\n")
    bsub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bsub.parent}:/usr/bin:/bin")


def test_submit_feeds_the_script_on_stdin(tmp_path, monkeypatch):
    fake_bsub(tmp_path, monkeypatch, f'[ "$#" = 0 ] && cat > {tmp_path}/stdin && '
                                     "echo 'Job <77> is submitted to queue <pdebug>.'")
    script = tmp_path / "job.lsf"
    script.write_text(render_lsf_script(SETUP, check_request()))
    assert submit_lsf(script) == "77"
    assert (tmp_path / "stdin").read_text() == script.read_text()


def test_a_rejected_job_quotes_bsub(tmp_path, monkeypatch):
    fake_bsub(tmp_path, monkeypatch, "echo 'Bad project name. Job not submitted.' >&2; exit 255")
    script = tmp_path / "job.lsf"
    script.write_text("#!/bin/bash\n")
    with pytest.raises(EnsembleError, match="bsub rejected the job \\(255\\): Bad project name. Job not submitted."):
        submit_lsf(script)


def test_a_missing_bsub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    script = tmp_path / "job.lsf"
    script.write_text("#!/bin/bash\n")
    with pytest.raises(EnsembleError, match="bsub: command not found \\(is LSF installed on this machine\\?\\)"):
        submit_lsf(script)


def test_execute_alloc_submits_with_bsub_where_lsf_is_the_batch_system(tmp_path, monkeypatch):
    from ensemble import Ensemble, Run
    from ensemble.errors import SpecError

    ens = Ensemble.create(runs=[Run({"x": 1})], application="/bin/true", app_is_batch_script=False,
                          setup_dir=tmp_path / "s")
    bsub = tmp_path / "bin" / "bsub"  # only bsub on PATH: no sbatch
    bsub.parent.mkdir()
    bsub.write_text(f"#!/bin/sh\n/usr/bin/cat > {tmp_path}/stdin && echo 'Job <4242> is submitted to queue <pbatch>.'\n")
    bsub.chmod(0o755)
    monkeypatch.setenv("PATH", str(bsub.parent))
    with pytest.raises(SpecError, match="repeats: follow-up allocations use Slurm's job dependencies"):
        ens.execute_alloc(nodes=2, repeats=1)
    assert not (ens.setup_dir / "batch").exists(), "nothing written for a refused request"
    assert ens.execute_alloc(nodes=2, timeout=30, bank="myproj") == "4242"
    script = ens.setup_dir / "batch" / "ensemble-1.lsf"
    assert (tmp_path / "stdin").read_text() == script.read_text()
    assert "#BSUB -nnodes 2" in script.read_text() and "#BSUB -W 30" in script.read_text()
    assert [e["kind"] for e in ens.events()].count("alloc_submitted") == 1

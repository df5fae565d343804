"""Progress on long commands (:mod:`ensemble.watch.progress`): a bar on standard error when it is a
terminal, nothing at all otherwise or with ``--quiet``.

The command-line tests run ``python -m ensemble`` with standard error on a pseudo-terminal.
"""
from __future__ import annotations

import io
import os
import re
import select
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ensemble import Ensemble, Run
from ensemble.cli import main
from ensemble.store import DB_NAME
from ensemble.watch import progress

TRUE = shutil.which("true")
#: Environment variables with which rich would not treat a terminal as one.
TERMINAL_OVERRIDES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTerminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TERMINAL_OVERRIDES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("COLUMNS", "120")


def plain(text: str) -> str:
    """``text`` without escape sequences and carriage returns."""
    return ANSI.sub("", text).replace("\r", "")


def on_terminal(cwd: Path, *argv: str) -> tuple[int, str, str]:
    """Run ``python -m ensemble ARGV`` with standard error on a pseudo-terminal; return the exit
    status, standard output and what the terminal received (escape sequences removed)."""
    master, slave = os.openpty()
    with open(cwd / "stdout.txt", "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ensemble", *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=slave, env=os.environ.copy())
    os.close(slave)
    received = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            received.append(data)
    finally:
        os.close(master)
    code = proc.wait()
    return code, (cwd / "stdout.txt").read_text(), plain(b"".join(received).decode(errors="replace"))


@pytest.fixture
def samples(workdir: Path) -> Path:
    path = workdir / "samples.csv"
    path.write_text("x\n" + "".join(f"{i}\n" for i in range(200)))
    return path


# -- the module --------------------------------------------------------------------------------------------------------
def test_a_bar_on_a_terminal_shows_the_count_and_eta():
    term = FakeTerminal()
    with progress.bar("items", 200, stream=term) as advance:
        for _ in range(200):
            advance(1)
    text = plain(term.getvalue())
    assert "items" in text and "200/200" in text and "eta" in text


def test_work_not_counted_gets_a_spinner():
    term = FakeTerminal()
    with progress.bar("reading samples.csv", stream=term):
        pass
    text = plain(term.getvalue())
    assert "reading samples.csv" in text and "/" not in text


def test_nothing_is_drawn_off_a_terminal_or_when_quiet():
    for stream, quiet in ((io.StringIO(), False), (FakeTerminal(), True)):
        with progress.bar("items", 3, quiet=quiet, stream=stream) as advance:
            advance(3)
        with progress.watch_runs(Path("/nonexistent"), quiet=quiet, stream=stream):
            pass
        assert stream.getvalue() == ""


def test_watch_runs_reads_the_store_without_writing_it_and_stops_its_thread(workdir):
    ens = Ensemble.create(TRUE, [Run({"x": i}) for i in range(3)], app_is_batch_script=False)
    ens.dequeue_runs([2])
    before = (ens.setup_dir / DB_NAME).read_bytes()
    term = FakeTerminal()
    with progress.watch_runs(ens.setup_dir, stream=term):
        pass
    text = plain(term.getvalue())
    assert "1/3" in text and "killed 1" in text
    assert not [t for t in threading.enumerate() if t.name == "ensemble-progress"]
    assert (ens.setup_dir / DB_NAME).read_bytes() == before


def test_create_and_add_runs_call_progress_once_per_run(workdir):
    calls: list[int] = []
    ens = Ensemble.create(TRUE, [Run({"x": i}) for i in range(3)], app_is_batch_script=False, progress=calls.append)
    ens.add_runs([Run({"x": 9})], progress=calls.append)
    assert calls == [1, 1, 1, 1] and ens.count_by_status() == 4
    with pytest.raises(TypeError, match="progress: expected a callable or None, got 5"):
        Ensemble.create_overwrite(TRUE, [Run({"x": 1})], app_is_batch_script=False, progress=5)


# -- the command line ---------------------------------------------------------------------------------------------------
def test_create_draws_progress_on_a_terminal_only(samples, workdir):
    base = ("create", "samples.csv", "--application", TRUE, "--no-batch-script")
    code, out, term = on_terminal(workdir, *base)
    assert (code, out) == (0, f"created ensemble of 200 runs in {workdir / '.ensemble_setup'}\n")
    assert "reading samples.csv" in term and "building runs" in term
    assert re.search(r"checking runs .*200/200", term)

    assert on_terminal(workdir, *base, "--overwrite", "--quiet")[::2] == (0, "")
    piped = subprocess.run([sys.executable, "-m", "ensemble", *base, "--overwrite"], cwd=workdir,
                           capture_output=True, text=True)
    assert (piped.returncode, piped.stderr) == (0, "")


def test_add_draws_progress_on_a_terminal(samples, workdir, capsys, monkeypatch):
    assert main(["create", "samples.csv", "--application", TRUE, "--no-batch-script"]) == 0
    (workdir / "more.csv").write_text("x\n1000\n1001\n")
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    capsys.readouterr()
    assert main(["add", "more.csv"]) == 0
    assert capsys.readouterr().out == "added 2 runs\n"
    assert re.search(r"checking runs .*2/2", plain(term.getvalue()))


def test_write_draws_a_spinner_while_the_summary_goes_to_a_file(samples, workdir):
    assert main(["create", "samples.csv", "--application", TRUE, "--no-batch-script"]) == 0
    code, out, term = on_terminal(workdir, "write", "csv", "-o", "summary.csv")
    assert (code, out) == (0, "") and "writing 200 runs as csv" in term
    assert on_terminal(workdir, "write", "csv", "-o", "quiet.csv", "-q")[::2] == (0, "")
    assert (workdir / "summary.csv").read_bytes() == (workdir / "quiet.csv").read_bytes()


def test_execute_block_draws_runs_done_with_status_counts(workdir):
    Ensemble.create(TRUE, [Run({"x": i}) for i in range(20)], app_is_batch_script=False)
    argv = ("execute", "--block", "--launcher", "local", "--cores", "1", "--timeout", "0.75")
    code, out, term = on_terminal(workdir, *argv)
    assert code == 0 and out.startswith("queued=0 success=20 ")
    assert re.search(r"runs .*20/20 .*success 20", term)

    Ensemble.create_overwrite(TRUE, [Run({"x": i}) for i in range(20)], app_is_batch_script=False)
    code, out, term = on_terminal(workdir, *argv, "--quiet")
    assert code == 0 and out.startswith("queued=0 success=20 ")
    assert [line for line in term.splitlines() if line.strip()] == [
        f"ensemble: executing with launcher local on 1 cores of this machine; manager log: "
        f"{workdir / '.ensemble_setup' / 'logs' / 'manager.log'}"]

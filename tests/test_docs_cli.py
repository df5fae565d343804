"""The example outputs in docs/cli.rst are what the commands really print.

The examples' ``samples.csv`` and ``simulate.sh`` are taken from the page itself; each command
of :data:`SCENARIO` runs (through bash, stderr with stdout, as a terminal shows them) in that
order in a fresh directory, and its output must equal the page's after :func:`normal` masks
what differs between machines and runs (the directory and so the tables' column widths, pids,
the host, seconds, the core count).  The examples of commands that need other states (Slurm, a running manager)
are not run here.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "cli.rst"
DOC_DIR = "/tmp/clidemo"
E = "ensemble --setup-dir study.ens"
SCENARIO = [
    f"{E} create samples.csv --application simulate.sh --max-restarts 1 --abort-on 3",
    f"{E} status", f"{E} status --json", f"{E} status 1-2", f"{E} progress", f"{E} progress --json",
    f"{E} write csv", f"{E} write csv --columns y,status --status queued,success",
    f"{E} dryrun 1 -v", "cat runs/1/simulate.sh", f"{E} rundirs",
    f"{E} rundirs --all --json", f"{E} create samples.csv --application simulate.sh",
    f'{E} execute --block; echo "exit $?"', f"{E} log 2", f"{E} log 2 --path",
    f"{E} attempts 1-3",
]


def literal_after(text: str, intro: str) -> str:
    """The indented literal block that follows the paragraph ending in ``intro``."""
    body = text.split(intro, 1)[1].split("\n\n", 2)[1]
    return "\n".join(line[4:] for line in body.splitlines()) + "\n"


def examples(text: str) -> dict[str, list[str]]:
    """Each ``$ command`` of the page's console blocks with the lines shown after it (first occurrence)."""
    out: dict[str, list[str]] = {}
    for block in re.findall(r"^\.\. code-block:: console\n\n((?:    .*\n|\n)+)", text, re.MULTILINE):
        shown: list[str] | None = None
        for line in (raw[4:] for raw in block.splitlines()):
            if line.startswith("$ "):
                shown = [] if line[2:] not in out else None
                if shown is not None:
                    out[line[2:]] = shown
            elif not line.strip():
                shown = None
            elif shown is not None:
                shown.append(line)
    return out


def normal(lines: list[str], here: str) -> list[str]:
    masked = []
    for line in lines:
        line = line.replace(here, DOC_DIR)
        line = re.sub(r"manager pid \d+", "manager pid N", line)
        line = re.sub(r"  \d+\.\d{3}  ", "  S  ", line.replace(f"  {socket.gethostname()}  ", "  vm  "))
        line = re.sub(r" on \d+ cores of this machine", " on N cores of this machine", line)
        masked.append(re.sub(r" {2,}", "  ", line.rstrip()))  # table columns are as wide as the paths
    return masked


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> tuple[dict[str, list[str]], dict[str, list[str]], str]:
    text = PAGE.read_text()
    here = tmp_path_factory.mktemp("clidemo")
    (here / "samples.csv").write_text(literal_after(text, "The examples below use this ``samples.csv``::"))
    script = here / "simulate.sh"
    script.write_text(literal_after(text, "and this ``simulate.sh``::"))
    script.chmod(0o755)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", "COLUMNS": "80"}
    real = {}
    for command in SCENARIO:
        done = subprocess.run(["bash", "-c", f"{{ {command} ; }} 2>&1"], cwd=here, capture_output=True, text=True,
                              env=env, timeout=120)
        real[command] = done.stdout.splitlines()
    return examples(text), real, str(here)


@pytest.mark.parametrize("command", SCENARIO)
def test_page_shows_the_real_output(outputs, command):
    shown, real, here = outputs
    assert command in shown, f"docs/cli.rst has no example '$ {command}'"
    assert normal(shown[command], here) == normal(real[command], here)


def test_page_shows_the_real_top_level_help():
    text = PAGE.read_text()
    after = text.split(".. code-block:: text\n\n", 1)[1].splitlines()
    end = next(k for k, line in enumerate(after) if line.strip() and not line.startswith("    "))
    shown = [line[4:] for line in after[:end]]
    env = {**os.environ, "COLUMNS": "80"}
    real = subprocess.run([sys.executable, "-m", "ensemble", "--help"], capture_output=True, text=True, env=env,
                          check=True).stdout.splitlines()
    assert "\n".join(shown).rstrip() == "\n".join(real).rstrip(), "regenerate with COLUMNS=80 ensemble --help"

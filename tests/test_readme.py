"""The README's quickstart runs as written, and the docs index shows the same text."""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"


def quickstart_blocks() -> dict[str, list[str]]:
    """The code blocks between the README's quickstart markers, by language."""
    text = (ROOT / "README.rst").read_text()
    section = text.split(".. quickstart-start\n", 1)[1].split(".. quickstart-end\n", 1)[0]
    blocks: dict[str, list[str]] = {}
    for language, body in re.findall(r"^\.\. code-block:: (\w+)\n\n((?:    .*\n|\n)+)", section, re.MULTILINE):
        lines = [line[4:] for line in body.rstrip("\n").splitlines()]
        blocks.setdefault(language, []).append("\n".join(lines) + "\n")
    return blocks


def fresh_copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(QUICKSTART, target)
    return target


def env() -> dict[str, str]:
    """This interpreter's ``ensemble`` command first on PATH (where pip installed it)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}


def test_python_quickstart_runs_literally(tmp_path):
    (code,) = quickstart_blocks()["python"]
    where = fresh_copy(tmp_path, "python")
    done = subprocess.run([sys.executable, "-c", code], cwd=where, capture_output=True, text=True, env=env(),
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "(12, 12)" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines()[1:] if line.split()[:1] != ["x"]]
    table = {(int(r[1]), int(r[2])): (int(r[3]), r[4]) for r in rows if len(r) == 5}
    assert table == {(x, y): (x * y, "success") for x in range(4) for y in (10, 20, 30)}
    assert (where / "runs" / "1" / "simulate.sh").read_text().count("x=0\n") == 1, "tokens replaced"


def test_shell_quickstart_runs_literally(tmp_path):
    (console,) = quickstart_blocks()["console"]
    where = fresh_copy(tmp_path, "shell")
    assert shutil.which("ensemble", path=env()["PATH"]), "pip install -e . puts the ensemble command on PATH"
    for line in console.splitlines():
        assert line.startswith("$ ")
        done = subprocess.run(["bash", "-c", line[2:]], cwd=where, capture_output=True, text=True, env=env(),
                              timeout=300)
        assert done.returncode == 0, f"{line}: {done.stderr}"
    with open(where / "results.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted((int(r["x"]), int(r["y"]), int(r["product"]), r["status"]) for r in rows) == sorted(
        (x, y, x * y, "success") for x in range(4) for y in (10, 20, 30))


def test_docs_index_shows_the_readme_quickstart():
    index = (ROOT / "docs" / "index.rst").read_text()
    assert (".. include:: ../README.rst\n   :start-after: .. quickstart-start\n"
            "   :end-before: .. quickstart-end\n") in index
    assert {"python", "console"} <= set(quickstart_blocks())

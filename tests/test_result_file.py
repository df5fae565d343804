"""Results from any language: the result file, ``ensemble result set``, ``$ENSEMBLE_PYTHON``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from engine_helpers import create, execute, run, sh

from ensemble import CompositeRun, Ensemble, Step
from ensemble.errors import SpecError

C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    FILE *f = fopen("ensemble_result.json", "w");
    fprintf(f, "{\"energy\": %.2f, \"run\": %s}\n", -1.25, getenv("ENSEMBLE_RUN_ID"));
    return fclose(f) != 0;
}
"""


def results(ens) -> dict[int, object]:
    return {r["id"]: r["result"] for r in ens.runs()}


def test_three_ways_side_by_side(edir):
    ens = create([
        run(0, sh('echo \'{"way": "file", "values": [1, 2]}\' > ensemble_result.json')),
        run(1, sh('"$ENSEMBLE_BIN" result set \'{"way": "cli"}\'')),
        run(2, sh('"$ENSEMBLE_PYTHON" -c \'from ensemble import runtime; runtime.set_result({"way": "python"})\'')),
        run(3, sh("true")),
    ])
    execute(ens)
    assert results(ens) == {1: {"way": "file", "values": [1, 2]}, 2: {"way": "cli"}, 3: {"way": "python"}, 4: None}
    df = ens.as_dataframe()
    assert df.loc[1, "way"] == "file" and df.loc[2, "way"] == "cli"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler on this machine")
def test_a_c_program_writes_its_result(edir):
    source = edir / "app.c"
    source.write_text(C_PROGRAM)
    subprocess.run(["cc", "-o", str(edir / "app"), str(source)], check=True)
    ens = create([CompositeRun({"x": k}, [Step([str(edir / "app")], batch_script=False)]) for k in range(3)])
    execute(ens)
    assert results(ens) == {k: {"energy": -1.25, "run": k} for k in (1, 2, 3)}


def test_a_bad_result_file_fails_the_run_naming_the_file(edir):
    ens = create([run(0, sh("echo '{not json' > ensemble_result.json")), run(1, sh("echo NaN > ensemble_result.json"))])
    execute(ens)
    rows = {r["id"]: r for r in ens.runs()}
    assert rows[1]["status"].label == "failure"
    assert rows[1]["message"].startswith("result file ensemble_result.json: not valid JSON (")
    assert rows[2]["status"].label == "failure"
    assert "result file ensemble_result.json" in rows[2]["message"] and "NaN" in rows[2]["message"]


def test_the_file_is_read_only_after_the_last_step_succeeds(edir):
    ens = create([CompositeRun({"x": 0}, [Step(["sh", "-c", "echo 1 > ensemble_result.json"], batch_script=False),
                                         Step(["sh", "-c", "exit 4"], batch_script=False)])])
    execute(ens)
    assert results(ens) == {1: None}


def test_the_name_is_configurable_or_off(edir):
    ens = create([run(0, sh("echo 7 > out.json; echo 8 > ensemble_result.json"))], result_file="out.json")
    execute(ens)
    assert results(ens) == {1: 7}
    ens.close()
    off = Ensemble.create(runs=[run(0, sh("echo 8 > ensemble_result.json"))], result_file=None, setup_dir="off",
                          run_dir_names="off/{run_id}")
    execute(off)
    assert results(off) == {1: None}


@pytest.mark.parametrize("bad", ["/abs/result.json", "../up.json", "", 3])
def test_a_bad_result_file_name_is_refused_before_anything_is_written(edir, bad):
    with pytest.raises((SpecError, TypeError), match="result_file: expected"):
        create([run(0, sh("true"))], result_file=bad)
    assert not (edir / "setup").exists()


def test_post_run_value_wins_over_the_file(edir):
    (edir / "iface.py").write_text("def post_run(run_id, run_dir, sample, setup_dir):\n    return {'from': 'hook'}\n")
    ens = create([run(0, sh("echo 1 > ensemble_result.json")), run(1, sh("echo 2 > ensemble_result.json"))],
                 app_interface="iface.py")
    execute(ens)
    assert results(ens) == {1: {"from": "hook"}, 2: {"from": "hook"}}


def cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", "setup", *argv], capture_output=True,
                          text=True, input=stdin)


def test_result_set_and_show_from_the_command_line(edir):
    ens = create([run(0, sh("true")), run(1, sh("true"))])
    execute(ens)
    assert cli("result", "set", "--run", "1", '{"a": 1}').returncode == 0
    assert cli("result", "set", "--run", "2", "-", stdin="[1, 2]").returncode == 0
    (edir / "r.json").write_text('"text"')
    assert cli("result", "set", "--run", "1", f"@{edir / 'r.json'}").returncode == 0
    assert results(ens) == {1: "text", 2: [1, 2]}
    assert cli("result", "show", "--run", "2").stdout == "[1, 2]\n"
    bad = cli("result", "set", "--run", "1", "{oops")
    assert bad.returncode == 2 and bad.stderr.startswith("ensemble: error: result set: not valid JSON (")
    assert "Traceback" not in bad.stderr
    outside = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", "setup", "result", "set", "1"],
                             capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                  if k != "ENSEMBLE_RUN_ID"})
    assert outside.returncode == 2 and "give --run ID (outside a run ENSEMBLE_RUN_ID is not set)" in outside.stderr
    assert json.loads(cli("result", "show", "--run", "1").stdout) == "text"

"""``ensemble log`` and the log paths in ``ensemble attempts``."""
from __future__ import annotations

import json
import os
from pathlib import Path

from engine_helpers import create, run, sh

from ensemble.cli import main


def cli(ens, *args: str) -> int:
    return main(["--setup-dir", str(ens.setup_dir), *args])


def test_log_shows_the_last_attempts_stderr_tail(edir, capsys):
    ens = create([run(1, sh('echo out-$ENSEMBLE_ATTEMPT; for i in 1 2 3; do echo "err $i" >&2; done; exit 3'))],
                 max_restarts=1)
    ens.execute_local(blocking=True, launcher="local")
    capsys.readouterr()
    assert cli(ens, "log", "1", "--tail", "2") == 0
    assert capsys.readouterr().out == "err 2\nerr 3\n"
    assert cli(ens, "log", "1", "--stdout") == 0
    assert capsys.readouterr().out == "out-2\n", "the last attempt by default"
    assert cli(ens, "log", "1", "--stdout", "--attempt", "1") == 0
    assert capsys.readouterr().out == "out-1\n"
    assert cli(ens, "log", "1", "--path") == 0
    assert capsys.readouterr().out.strip().endswith("ensemble.step0.attempt2.err")


def test_log_of_an_attempt_that_does_not_exist_is_a_clear_error(edir, capsys):
    ens = create([run(1, sh("true"))])
    assert cli(ens, "log", "1") == 2
    assert "log: run 1 has no attempt recorded" in capsys.readouterr().err
    ens.execute_local(blocking=True, launcher="local")
    assert cli(ens, "log", "1", "--step", "4") == 2
    assert "log: run 1 has no attempt --step 4 recorded" in capsys.readouterr().err


def test_attempts_show_where_the_logs_are_in_both_layouts(edir, capsys):
    ens = create([run(1, sh("echo hi >&2"))])
    ens.execute_local(blocking=True, launcher="local", log_layout="combined")
    capsys.readouterr()
    assert cli(ens, "attempts", "1", "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["logs"]["stdout"] == row["logs"]["stderr"] and row["logs"]["stderr"].endswith(".attempt1.log")
    assert cli(ens, "log", "1") == 0
    assert capsys.readouterr().out == "hi\n"


def test_steps_know_the_managers_python_and_ensemble_command(edir):
    # A step whose own python3 is another interpreter can still reach this installation.
    ens = create([run(1, sh('"$ENSEMBLE_PYTHON" -c "from ensemble import runtime; '
                           'runtime.set_result({\\"ok\\": 1})"; echo "$ENSEMBLE_BIN" > bin.txt'))])
    ens.execute_local(blocking=True, launcher="local")
    row = ens.runs([1])[0]
    assert row["result"] == {"ok": 1}
    recorded = Path(row["run_dir"], "bin.txt").read_text().strip()
    assert recorded and os.access(recorded, os.X_OK) and Path(recorded).name == "ensemble"


def test_failures_are_shown_with_their_stderr_after_execute_and_in_status(edir, capsys):
    ens = create([run(1, sh("true")), run(2, sh('echo "bad input: x=2" >&2; exit 3'))])
    assert cli(ens, "execute", "--block", "--launcher", "local") == 3
    err = capsys.readouterr().err
    assert "1 run(s) failed or were aborted" in err and "  run 2: step 0 exited with 3" in err
    assert "    | bad input: x=2" in err and "ensemble log 2 for more" in err
    assert cli(ens, "status") == 0
    out = capsys.readouterr().out
    assert "    | bad input: x=2" in out and out.index("total: 2") < out.index("run 2:")


def test_failure_report_names_the_last_five_of_many(edir, capsys):
    ens = create([run(i, sh(f"echo fail{i} >&2; exit 1")) for i in range(1, 9)])
    ens.execute_local(blocking=True, launcher="local")
    capsys.readouterr()
    assert cli(ens, "status") == 0
    out = capsys.readouterr().out
    assert "8 run(s) failed or were aborted; the last 5:" in out
    assert [f"run {i}:" in out for i in range(1, 9)] == [False] * 3 + [True] * 5
    assert "    | fail8" in out

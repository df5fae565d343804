"""The ``ensemble`` command line."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import SETUP, snapshot, sql

from ensemble import Ensemble, Run, RunStatus
from ensemble.cli import main

TRUE = shutil.which("true")


@pytest.fixture
def samples(workdir: Path) -> Path:
    path = workdir / "samples.csv"
    path.write_text("x,y,name\n1,2.5,a\n3,4.0,b\n-7,1e3,c d\n")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys, *extra: str) -> str:
    code, out, err = run(capsys, "create", "samples.csv", "--application", TRUE, "--no-batch-script", *extra)
    assert (code, err) == (0, "")
    return out


def assert_user_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ensemble: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# -- create and add ------------------------------------------------------------------------------------------------------
def test_create_from_csv_parses_numbers(capsys, samples, workdir):
    out = create(capsys)
    assert out == f"created ensemble of 3 runs in {workdir / SETUP}\n"
    with Ensemble() as ens:
        got = [r["sample"] for r in ens.runs()]
        step = ens.runs()[0]["steps"][0]
    assert got == [{"x": 1, "y": 2.5, "name": "a"}, {"x": 3, "y": 4.0, "name": "b"},
                   {"x": -7, "y": 1000.0, "name": "c d"}]
    assert [type(s["x"]) for s in got] == [int, int, int]
    assert [type(s["y"]) for s in got] == [float, float, float]
    assert step["args"] == [TRUE] and step["batch_script"] is False


def test_create_options(capsys, samples, workdir):
    (workdir / "deck.txt").write_text("x=%%x%%\n")
    create(capsys, "--args", "-x {x} --name '{name}'", "--tasks", "2", "--cores-per-task", "3", "--timeout", "1.5",
           "--run-dir-names", "out/{name}", "--run-parse", "deck.txt", "--max-restarts", "none",
           "--max-failed-runs", "4", "--abort-on", "3", "--abort-on", "5", "--no-strict-templates")
    with Ensemble() as ens:
        cfg = ens.config
        step = ens.runs([3])[0]["steps"][0]
        dirs = [d for _, d in ens.run_dirs(nonexistent=True)]
    assert step["args"] == [TRUE, "-x", "-7", "--name", "c d"]
    assert (step["tasks"], step["cores_per_task"], step["timeout"]) == (2, 3, 1.5)
    assert dirs == [str(workdir / "out" / n) for n in ("a", "b", "c d")]
    assert cfg.run_parse == [str(workdir / "deck.txt")]
    assert (cfg.max_restarts, cfg.max_failed_runs, cfg.abort_on) == (None, 4, [3, 5])
    assert cfg.strict_templates is False


def test_create_overwrite_and_custom_setup_dir(capsys, samples, workdir):
    code, _, err = run(capsys, "--setup-dir", "s1", "create", "samples.csv", "--application", TRUE,
                       "--no-batch-script")
    assert (code, err) == (0, "")
    assert Ensemble.exists("s1") and not Ensemble.exists()
    code, out, err = run(capsys, "--setup-dir", "s1", "create", "samples.csv", "--application", TRUE,
                         "--no-batch-script")
    assert_user_error(code, out, err, "already exists")
    (workdir / "one.csv").write_text("x\n9\n")
    code, out, err = run(capsys, "--setup-dir", "s1", "create", "one.csv", "--application", TRUE,
                         "--no-batch-script", "--overwrite")
    assert code == 0
    with Ensemble("s1") as ens:
        assert [r["sample"] for r in ens.runs()] == [{"x": 9}]


def test_add(capsys, samples, workdir):
    create(capsys, "--run-dir-names", "r/{x}")
    (workdir / "more.csv").write_text("x,y,name\n10,0.5,z\n")
    code, out, err = run(capsys, "add", "more.csv")
    assert (code, out, err) == (0, "added 1 runs\n", "")
    with Ensemble() as ens:
        assert ens.filter_by_status() == [1, 2, 3, 4]
        assert ens.runs([4])[0]["sample"] == {"x": 10, "y": 0.5, "name": "z"}
    code, out, err = run(capsys, "add", "more.csv")  # same run directory again
    assert_user_error(code, out, err, "run_dir_names")
    with Ensemble() as ens:
        assert ens.count_by_status() == 4


# -- status, progress, write ------------------------------------------------------------------------------------------------
def set_status(run_id: int, status: RunStatus, **columns) -> None:
    assignments = ", ".join(["status=?", *(f"{k}=?" for k in columns)])
    sql(SETUP, f"UPDATE runs SET {assignments} WHERE id=?", (int(status), *columns.values(), run_id))


def test_status_counts(capsys, samples):
    create(capsys)
    set_status(1, RunStatus.SUCCESS)
    set_status(2, RunStatus.FAILURE)
    code, out, err = run(capsys, "status")
    assert (code, err) == (0, "")
    assert out.splitlines()[:7] == [" waiting: 1", " running: 0", " success: 1", " failure: 1", " aborted: 0",
                                    "  killed: 0", "   total: 3"]
    assert out.splitlines()[7:9] == ["", "1 run(s) failed or were aborted; the last 1:"]
    code, out, _ = run(capsys, "status", "--json")
    assert json.loads(out) == {"queued": 1, "success": 1, "failure": 1, "aborted": 0, "killed": 0, "running": 0,
                               "total": 3}


def test_status_with_ids_table_and_json(capsys, samples, workdir):
    create(capsys)
    set_status(2, RunStatus.FAILURE, restarts=4, message="exit 1")
    code, out, err = run(capsys, "status", "2-3")
    assert (code, err) == (0, "")
    header, first, second = out.splitlines()
    assert header.split() == ["run_id", "status", "running", "step", "restarts", "run_dir", "message"]
    assert first.split() == ["2", "failure", "False", "0", "4", str(workdir / "runs" / "2"), "exit", "1"]
    assert second.split() == ["3", "queued", "False", "0", "0", str(workdir / "runs" / "3")]
    code, out, _ = run(capsys, "status", "1,3", "--json")
    rows = json.loads(out)
    assert [(r["run_id"], r["status"], r["run_dir"]) for r in rows] == [
        (1, "queued", str(workdir / "runs" / "1")), (3, "queued", str(workdir / "runs" / "3"))]


def test_progress(capsys, samples):
    create(capsys)
    set_status(1, RunStatus.ABORTED)
    code, out, _ = run(capsys, "progress", "--json")
    assert (code, json.loads(out)) == (0, {"completed": 1, "total": 3})
    code, out, _ = run(capsys, "progress")
    assert out == "1/3 runs completed (33.3%)\n"


@pytest.mark.parametrize("fmt", ["csv", "json", "yaml"])
def test_write_to_file(capsys, samples, workdir, fmt):
    create(capsys)
    with Ensemble() as ens:
        ens.set_result(2, {"energy": 1.25})
    code, out, err = run(capsys, "write", fmt, "-o", f"summary.{fmt}")
    assert (code, out, err) == (0, "", "")
    text = (workdir / f"summary.{fmt}").read_text()
    if fmt == "csv":
        rows = list(csv.DictReader(text.splitlines()))
        assert [(r["run_id"], r["x"], r["name"], r["energy"], r["status"]) for r in rows] == [
            ("1", "1", "a", "", "queued"), ("2", "3", "b", "1.25", "queued"), ("3", "-7", "c d", "", "queued")]
    else:
        records = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        assert [(r["run_id"], r["sample"]["x"], r["result"]) for r in records] == [
            (1, 1, None), (2, 3, {"energy": 1.25}), (3, -7, None)]
    assert not (workdir / f"summary.{fmt}.tmp").exists()


def test_write_to_stdout(capsys, samples):
    create(capsys)
    code, out, _ = run(capsys, "write", "json")
    assert code == 0
    assert [r["sample"]["name"] for r in json.loads(out)] == ["a", "b", "c d"]


def test_write_into_missing_directory_is_a_user_error(capsys, samples):
    create(capsys)
    code, out, err = run(capsys, "write", "csv", "-o", "no/such/dir/out.csv")
    assert_user_error(code, out, err, "no/such/dir")


def test_write_chosen_columns_of_runs_with_given_statuses(capsys, samples, workdir):
    create(capsys)
    set_status(1, RunStatus.SUCCESS)
    set_status(3, RunStatus.FAILURE, message="exit 2")
    with Ensemble() as ens:
        ens.set_result(1, {"energy": 1.25})
    code, out, err = run(capsys, "write", "csv", "--columns", "status,energy,name", "--status", "success,failure")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["run_id,status,energy,name", "1,success,1.25,a", "3,failure,,c d"]
    code, out, _ = run(capsys, "write", "json", "--status", "failure")
    assert [(r["run_id"], r["message"]) for r in json.loads(out)] == [(3, "exit 2")]
    code, out, _ = run(capsys, "write", "yaml", "--status", "queued")
    assert [r["run_id"] for r in yaml.safe_load(out)] == [2]


@pytest.mark.parametrize(("argv", "fragments"), [
    (["csv", "--columns", "x,nope"], ["--columns: unknown column 'nope'", "available: run_id, x, y, name, result,"]),
    (["csv", "--status", "done"], ["--status: unknown status 'done'", "success"]),
    (["json", "--columns", "x"], ["--columns: only csv and parquet"]),
    (["parquet"], ["--output: parquet is binary", "-o FILE"]),
    (["parquet", "-o", "-"], ["--output: parquet is binary"]),
], ids=["unknown_column", "unknown_status", "columns_of_json", "parquet_to_stdout", "parquet_to_dash"])
def test_write_option_errors(capsys, samples, workdir, argv, fragments):
    create(capsys)
    before = snapshot(workdir)
    code, out, err = run(capsys, "write", *argv)
    assert_user_error(code, out, err, *fragments)
    assert snapshot(workdir) == before


def test_write_parquet(capsys, samples, workdir):
    pytest.importorskip("pyarrow", reason="write parquet needs pyarrow (pip install pyarrow)")
    import pandas as pd

    create(capsys)
    set_status(2, RunStatus.SUCCESS)
    code, out, err = run(capsys, "write", "parquet", "-o", "runs.parquet", "--columns", "name,status")
    assert (code, out, err) == (0, "", "")
    frame = pd.read_parquet(workdir / "runs.parquet")
    assert list(frame.columns) == ["name", "status"] and list(frame["status"]) == ["queued", "success", "queued"]
    assert not (workdir / "runs.parquet.tmp").exists()


# -- dryrun, requeue, dequeue, rundirs, clear ------------------------------------------------------------------------------
def test_dryrun_and_rundirs(capsys, samples, workdir):
    create(capsys)
    code, out, _ = run(capsys, "rundirs", "--json")
    assert (code, json.loads(out)) == (0, {})
    code, out, _ = run(capsys, "dryrun", "2", "-v")
    assert out == f"dry run 2: prepared {workdir / 'runs' / '2'}\nprepared 1 run directories\n"
    assert (workdir / "runs" / "2").is_dir() and not (workdir / "runs" / "1").exists()
    code, out, _ = run(capsys, "rundirs", "--json")
    assert json.loads(out) == {"2": str(workdir / "runs" / "2")}
    code, out, _ = run(capsys, "rundirs", "--all", "--json")
    assert json.loads(out) == {str(i): str(workdir / "runs" / str(i)) for i in (1, 2, 3)}
    code, out, _ = run(capsys, "rundirs")
    assert out == f"2\t{workdir / 'runs' / '2'}\n"
    code, out, _ = run(capsys, "dryrun")
    assert (code, out) == (0, "prepared 3 run directories\n" + "".join(
        f"  {i}\t{workdir / 'runs' / str(i)}\n" for i in (1, 2, 3)))
    assert sorted(os.listdir(workdir / "runs")) == ["1", "2", "3"]


def test_requeue_hard_and_soft(capsys, samples):
    create(capsys)
    set_status(1, RunStatus.FAILURE, step=1, restarts=2)
    set_status(2, RunStatus.SUCCESS, step=1, restarts=1)
    assert run(capsys, "requeue", "1", "--hard") == (0, "", "")
    assert run(capsys, "requeue", "2") == (0, "", "")
    with Ensemble() as ens:
        rows = {r["id"]: (r["status"], r["step"], r["restarts"]) for r in ens.runs()}
    assert rows[1] == (RunStatus.QUEUED, 0, 0)
    assert rows[2] == (RunStatus.QUEUED, 1, 1)


def test_dequeue(capsys, samples):
    create(capsys)
    set_status(1, RunStatus.SUCCESS)
    assert run(capsys, "dequeue", "1-2", "3") == (0, "", "")
    with Ensemble() as ens:
        assert [r["status"] for r in ens.runs()] == [RunStatus.SUCCESS, RunStatus.KILLED, RunStatus.KILLED]


def test_clear(capsys, samples, workdir):
    create(capsys)
    run(capsys, "dryrun")
    code, out, err = run(capsys, "clear")
    assert (code, err) == (0, "") and out.startswith(f"removed {workdir / SETUP} ") and "run directories are kept" in out
    assert not (workdir / SETUP).exists()
    assert (workdir / "runs" / "1").is_dir()
    code, out, _ = run(capsys, "clear")
    assert (code, out) == (0, f"no ensemble at {workdir / SETUP}: nothing removed\n")


# -- user errors ---------------------------------------------------------------------------------------------------------
def test_missing_setup_dir(capsys, workdir):
    for argv in (["status"], ["progress"], ["write", "csv"], ["dryrun"], ["rundirs"], ["requeue", "1"],
                 ["dequeue", "1"], ["--setup-dir", "nowhere", "status"]):
        code, out, err = run(capsys, *argv)
        assert_user_error(code, out, err, "no ensemble")
    assert os.listdir(workdir) == []


@pytest.mark.parametrize("argv", [["status", "x"], ["requeue", "1", "x"], ["dequeue", "2-y"], ["dryrun", "1-"]])
def test_bad_run_id(capsys, samples, argv):
    create(capsys)
    code, out, err = run(capsys, *argv)
    assert_user_error(code, out, err, "run ids", "is not a run id")


@pytest.mark.parametrize("argv", [["requeue", "99"], ["dequeue", "1", "99"], ["dryrun", "99"]])
def test_unknown_run_id(capsys, samples, argv, workdir):
    create(capsys)
    code, out, err = run(capsys, *argv)
    assert_user_error(code, out, err, "no run 99")
    with Ensemble() as ens:
        assert ens.filter_by_status(RunStatus.QUEUED) == [1, 2, 3]
    assert not (workdir / "runs").exists()


def test_bad_csv(capsys, workdir):
    (workdir / "ragged.csv").write_text("x,y\n1,2\n3\n")
    before = snapshot(workdir)
    code, out, err = run(capsys, "create", "ragged.csv", "--application", TRUE, "--no-batch-script")
    assert_user_error(code, out, err, "ragged.csv", "line 3")
    code, out, err = run(capsys, "create", "missing.csv", "--application", TRUE, "--no-batch-script")
    assert_user_error(code, out, err, "missing.csv")
    assert snapshot(workdir) == before


def test_bad_create_input_is_one_line(capsys, samples, workdir):
    before = snapshot(workdir)
    code, out, err = run(capsys, "create", "samples.csv", "--application", "nothere.sh")
    assert_user_error(code, out, err, "nothere.sh", "not found")
    code, out, err = run(capsys, "create", "samples.csv", "--application", TRUE, "--no-batch-script",
                         "--args", "{missing}")
    assert_user_error(code, out, err, "--args", "missing")
    code, out, err = run(capsys, "create", "samples.csv", "--application", TRUE, "--no-batch-script",
                         "--abort-on", "300")
    assert_user_error(code, out, err, "--abort-on", "300")
    assert snapshot(workdir) == before


def test_attempts_of_unknown_runs_is_a_user_error(capsys, samples):
    create(capsys)
    code, out, err = run(capsys, "attempts", "2", "7-9", "12")
    assert_user_error(code, out, err, "no runs 7-9, 12 in this ensemble", "ids are 1..3")
    code, out, err = run(capsys, "attempts", "99", "--json")
    assert_user_error(code, out, err, "no run 99 in this ensemble")
    code, out, err = run(capsys, "attempts", *(str(i) for i in range(10, 34, 2)))
    assert_user_error(code, out, err, "no runs 10, 12, 14, 16, 18, 20, 22, 24, 26, 28 and 2 more in this ensemble")
    code, out, err = run(capsys, "attempts", "1-3", "--json")
    assert (code, json.loads(out), err) == (0, [], "")


# -- through the installed console script -------------------------------------------------------------------------------
#: The console script installed with this interpreter (it may not be on PATH).
CONSOLE_SCRIPT = Path(sys.executable).with_name("ensemble")
#: The checkout under test, first on the children's import path.
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture
def console_script() -> Path:
    if not CONSOLE_SCRIPT.is_file():
        pytest.skip(f"ensemble is not installed for {sys.executable} (no console script next to it)")
    return CONSOLE_SCRIPT


def test_console_script_subprocess(samples, workdir, console_script):
    def cli(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([console_script, *argv], cwd=workdir, env=child_env(), capture_output=True, text=True,
                              timeout=60, check=False)

    done = cli("create", "samples.csv", "--application", TRUE, "--no-batch-script")
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert done.stdout == f"created ensemble of 3 runs in {workdir / SETUP}\n"
    done = cli("status", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["total"] == 3
    done = cli("--setup-dir", "nowhere", "progress")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("ensemble: error: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_module_entry_point(samples, workdir):
    done = subprocess.run([sys.executable, "-m", "ensemble.cli", "status"], cwd=workdir, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("ensemble: error: --setup-dir: no ensemble")


def test_closed_stdout_ends_quietly_with_status_141(samples, workdir):
    """``ensemble status 1-N | head -1`` through a real pipe: more output than the pipe holds, reader gone."""
    with Ensemble.create(application=TRUE, runs=[Run({"x": i}) for i in range(4000)],
                         app_is_batch_script=False):
        pass
    writer = subprocess.Popen([sys.executable, "-m", "ensemble", "status", "1-4000"], cwd=workdir, env=child_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.run(["head", "-1"], stdin=writer.stdout, capture_output=True, timeout=60, check=True)
    writer.stdout.close()
    err = writer.stderr.read().decode()
    writer.stderr.close()
    assert writer.wait(timeout=60) == 141
    assert err == ""
    assert head.stdout.decode().split() == ["run_id", "status", "running", "step", "restarts", "run_dir", "message"]


LAZY_COMMANDS = [["status"], ["status", "1-2", "--json"], ["progress"], ["attempts", "1"], ["add", "more.csv"],
                 ["--setup-dir", "other", "create", "samples.csv", "--application", TRUE, "--no-batch-script"]]


@pytest.mark.parametrize("argv", LAZY_COMMANDS, ids=[" ".join(a[:2]) for a in LAZY_COMMANDS])
def test_commands_do_not_import_pandas_or_the_engine(capsys, samples, workdir, argv):
    create(capsys)
    (workdir / "more.csv").write_text("x,y,name\n10,0.5,z\n")
    code = (f"import sys\nfrom ensemble import cli\nassert cli.main({argv!r}) == 0\n"
            "heavy = [m for m in ('pandas', 'numpy', 'yaml', 'jinja2', 'ensemble.engine', 'ensemble.alloc.execution',\n"
            "                     'ensemble.engine.hookworker', 'ensemble.results.summaries') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=child_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")


def test_starting_a_command_imports_nothing_it_does_not_use():
    """What every command pays at start: no progress-bar library (drawn only on a terminal), no
    package metadata (read only by create), no pool or dry-run machinery, no pandas."""
    heavy = ("rich", "importlib.metadata", "ensemble.alloc.autoalloc", "ensemble.cli.dryshow", "pandas", "numpy")
    done = subprocess.run([sys.executable, "-c", "import sys, ensemble.cli, ensemble.alloc.execution; "
                           f"print([m for m in {heavy!r} if m in sys.modules])"],
                          capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"

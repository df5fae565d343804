"""Input that would poison the manager or the database: NUL bytes, NaN and infinity, a full file system."""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import SETUP, snapshot, sql

import ensemble
from ensemble import CompositeRun, Ensemble, Run, SpecError, Step
from ensemble.spec import to_json

TRUE = shutil.which("true")
PACKAGE_ROOT = Path(ensemble.__file__).resolve().parents[1]


def refused(make: Callable[[], object], *fragments: str) -> str:
    """Assert ``make()`` raises SpecError whose message holds every fragment; return the message."""
    with pytest.raises(SpecError) as info:
        make()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# -- NUL bytes ------------------------------------------------------------------------------------------------------------
NUL_CASES = [
    (lambda: Step("x\0"), ["Step.args", "NUL", "'x\\x00'"]),
    (lambda: Step(["a", "b\0"]), ["Step.args[1]", "'b\\x00'"]),
    (lambda: Step([Path("a\0")]), ["Step.args[0]", "'a\\x00'"]),
    (lambda: Step("a", cwd="a\0b"), ["Step.cwd", "'a\\x00b'"]),
    (lambda: Step("a", cwd=Path("d\0")), ["Step.cwd", "'d\\x00'"]),
    (lambda: Run(args="\0"), ["Run.args", "'\\x00'"]),
    (lambda: Run(args=["-x", "1\0"]), ["Run.args[1]", "'1\\x00'"]),
    (lambda: Run({"x": "a\0"}), ["Run.sample['x']", "'a\\x00'"]),
    (lambda: Run({"x\0": 1}), ["Run.sample label", "'x\\x00'"]),
    (lambda: Run({"x": ["ok", {"deep": "b\0"}]}), ["Run.sample['x'][1]['deep']", "'b\\x00'"]),
    (lambda: CompositeRun({"y": "\0"}, [Step("a")]), ["CompositeRun.sample['y']", "'\\x00'"]),
]


@pytest.mark.parametrize(("make", "fragments"), NUL_CASES, ids=[f[0] for _, f in NUL_CASES])
def test_nul_bytes_are_refused_at_construction(make, fragments):
    refused(make, "NUL", *fragments)


def test_on_completion_refuses_nul_bytes(workdir):
    Ensemble.create(application=TRUE, runs=[Run()], app_is_batch_script=False).close()
    before = snapshot(workdir)
    with Ensemble() as ens:
        refused(lambda: ens.on_completion(["echo", "a\0"]), "on_completion.args[1]", "'a\\x00'")
        refused(lambda: ens.on_completion("echo", cwd="d\0"), "on_completion.cwd", "'d\\x00'")
        refused(lambda: ens.on_completion("echo", stdout="o\0"), "on_completion.stdout", "'o\\x00'")
        refused(lambda: ens.on_completion("echo", stderr=Path("e\0")), "on_completion.stderr", "'e\\x00'")
    assert snapshot(workdir) == before


def test_opening_a_setup_dir_with_a_nul_byte_is_refused(workdir):
    refused(lambda: Ensemble("setup\0"), "setup_dir", "NUL", "'setup\\x00'")


# -- NaN and infinity -----------------------------------------------------------------------------------------------------
NON_FINITE = [
    (float("nan"), "nan"),
    (float("inf"), "inf"),
    (-math.inf, "-inf"),
    (np.float64("nan"), "nan"),
    (np.float32("-inf"), "-inf"),
]


@pytest.mark.parametrize(("value", "shown"), NON_FINITE, ids=[s for _, s in NON_FINITE])
def test_non_finite_sample_values_are_refused(value, shown):
    refused(lambda: Run({"ok": 1.5, "x": value}), "Run.sample['x']", "NaN and infinity", f"got {shown}")
    refused(lambda: Run({"x": [1, value]}), "Run.sample['x'][1]", f"got {shown}")
    refused(lambda: Run({"x": {"y": value}}), "Run.sample['x']['y']", f"got {shown}")
    refused(lambda: Run({"x": np.array([0.0, value])}), "Run.sample['x'][1]", f"got {shown}")
    refused(lambda: CompositeRun({"x": value}, [Step("a")]), "CompositeRun.sample['x']", f"got {shown}")


def test_to_json_never_writes_nan_or_infinity():
    refused(lambda: to_json({"a": [1.0, float("nan")]}, "result"), "result['a'][1]", "got nan")
    refused(lambda: to_json(np.float64("inf"), "result"), "result:", "got inf")
    assert to_json({"a": [1.0, 2]}, "result") == '{"a":[1.0,2]}'


def test_set_result_refuses_non_finite_values_and_keeps_the_old_result(workdir):
    Ensemble.create(application=TRUE, runs=[Run({"x": 1})], app_is_batch_script=False).close()
    with Ensemble() as ens:
        ens.set_result(1, {"energy": 1.5})
        refused(lambda: ens.set_result(1, {"energy": float("nan")}), "result['energy']", "got nan")
        refused(lambda: ens.set_result(1, [np.float32("inf")]), "result[0]", "got inf")
        assert ens.runs([1])[0]["result"] == {"energy": 1.5}
    # SQLite's JSON functions can read every stored value.
    assert sql(SETUP, "SELECT json_extract(result, '$.energy'), json_extract(sample, '$.x') FROM runs") == [(1.5, 1)]


# -- a full file system -----------------------------------------------------------------------------------------------
def _mount_tmpfs(where: Path, size: str) -> None:
    """Mount a tmpfs of ``size`` on ``where``; skip the test where that is not permitted."""
    if shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("mount/umount are not available to make a small file system")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")


def fill(directory: Path) -> None:
    """Write into ``directory`` until the file system reports ENOSPC."""
    with open(directory / "filler", "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    assert shutil.disk_usage(directory).free == 0


@pytest.fixture
def small_fs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real 512 KiB file system (tmpfs), the current directory; unmounted afterwards.

    A tmpfs reports ENOSPC exactly like a full disk, so SQLite and Python fail
    here as they would on a full scratch file system.  Mounting needs root (or
    CAP_SYS_ADMIN); elsewhere the tests using this fixture are skipped.
    """
    mount = tmp_path / "fs"
    mount.mkdir()
    _mount_tmpfs(mount, "512k")
    monkeypatch.chdir(mount)
    try:
        yield mount
    finally:
        monkeypatch.chdir(tmp_path)
        subprocess.run(["umount", str(mount)], check=True)


def cli(*argv: str) -> subprocess.CompletedProcess:
    """Run this checkout's ``ensemble`` command in a child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "ensemble", *argv], capture_output=True, text=True, timeout=60,
                          check=False, env=env)


def assert_full_disk_error(done: subprocess.CompletedProcess, place: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("ensemble: error: no space left on the file system holding ")
    assert place in done.stderr


def write_samples(path: Path, rows: int) -> None:
    path.write_text("x,pad\n" + "".join(f"{i},{'p' * 60}\n" for i in range(rows)))


@pytest.mark.parametrize("open_connection", [False, True], ids=["no-wal-index", "wal-index-exists"])
def test_cli_writes_on_a_full_file_system_fail_with_one_line(small_fs, open_connection):
    """``add`` and ``dequeue`` with the setup directory on a really full tmpfs.

    With no other connection SQLite cannot even create its WAL index
    (SQLITE_IOERR_SHMSIZE); with one open it fails writing (SQLITE_FULL).
    Nothing changes in the ensemble.
    """
    (small_fs / "one.csv").write_text("x\n1\n")
    write_samples(small_fs / "more.csv", 1000)
    assert cli("create", "one.csv", "--application", TRUE, "--no-batch-script").returncode == 0
    holder = sqlite3.connect(small_fs / SETUP / "ensemble.db") if open_connection else None
    if holder is not None:
        holder.execute("SELECT count(*) FROM runs").fetchall()
    fill(small_fs)
    setup = str(small_fs / SETUP)
    try:
        assert_full_disk_error(cli("add", "more.csv"), setup)
        assert_full_disk_error(cli("dequeue", "1"), setup)
    finally:
        if holder is not None:
            holder.close()
    (small_fs / "filler").unlink()
    with Ensemble() as ens:
        assert [(r["id"], r["status"].label) for r in ens.runs()] == [(1, "queued")]


def test_write_onto_a_full_file_system_names_the_output_and_leaves_no_file(small_fs, tmp_path):
    setup = tmp_path / "setup"
    (tmp_path / "one.csv").write_text("x\n1\n")
    assert cli("--setup-dir", str(setup), "create", str(tmp_path / "one.csv"), "--application", TRUE,
               "--no-batch-script").returncode == 0
    with Ensemble(setup) as ens:
        ens.set_result(1, {"text": "r" * 100_000})
    fill(small_fs)
    before = snapshot(small_fs)
    assert_full_disk_error(cli("--setup-dir", str(setup), "write", "json", "-o", "out.json"),
                           repr(str(small_fs / "out.json")))
    assert snapshot(small_fs) == before


def test_cli_create_on_a_full_file_system_leaves_nothing(small_fs):
    write_samples(small_fs / "many.csv", 3000)
    fill(small_fs)
    before = snapshot(small_fs)
    done = cli("create", "many.csv", "--application", TRUE, "--no-batch-script")
    assert_full_disk_error(done, str(small_fs / SETUP))
    assert snapshot(small_fs) == before


# -- the CLI's CSV samples ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e400"])
def test_csv_non_finite_numbers_are_refused_naming_file_line_and_column(capsys, workdir, text):
    from ensemble.cli import main

    (workdir / "s.csv").write_text(f"x,y\n1,2\n3,{text}\n")
    before = snapshot(workdir)
    code = main(["create", "s.csv", "--application", TRUE, "--no-batch-script"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == (f"ensemble: error: samples: 's.csv' line 3, column 'y': {text!r} is not a finite number "
                   "(NaN and infinity cannot be stored)\n")
    assert snapshot(workdir) == before


def test_csv_nul_bytes_are_refused_naming_file_line_and_column(capsys, workdir):
    from ensemble.cli import main

    (workdir / "s.csv").write_text("x,y\n1,a\0b\n")
    before = snapshot(workdir)
    code = main(["create", "s.csv", "--application", TRUE, "--no-batch-script"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err == "ensemble: error: samples: 's.csv' line 2, column 'y': must not contain a NUL byte, got 'a\\x00b'\n"
    assert snapshot(workdir) == before


def test_csv_finite_numbers_still_parse(capsys, workdir):
    from ensemble.cli import main

    (workdir / "s.csv").write_text("x,y,z\n1,1e300,nano\n")
    assert main(["create", "s.csv", "--application", TRUE, "--no-batch-script"]) == 0
    with Ensemble() as ens:
        assert ens.runs()[0]["sample"] == {"x": 1, "y": 1e300, "z": "nano"}
    assert json.loads(sql(SETUP, "SELECT json_extract(sample, '$') FROM runs")[0][0]) == {"x": 1, "y": 1e300,
                                                                                         "z": "nano"}

"""Faults around the runs: a corrupted or foreign setup directory, a missing or non-executable
program, a run directory deleted underneath.  After each, every run is in one terminal state (or
queued), nothing is left running and ``PRAGMA integrity_check`` is ok."""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from engine_helpers import create, execute, run, sh

from ensemble import Ensemble, Step
from ensemble.errors import EnsembleError
from ensemble.store import DB_NAME


def integrity(ens: Ensemble) -> str:
    conn = sqlite3.connect(ens.setup_dir / DB_NAME)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ensemble", *argv], capture_output=True, text=True)


@pytest.mark.parametrize("make, why", [
    (lambda path: path.write_bytes(b"\x13" * 4096), "file is not a database"),
    (lambda path: sqlite3.connect(path).execute("CREATE TABLE t(x)").connection.commit(), "no such table: meta"),
])
def test_a_corrupted_or_foreign_setup_directory_is_one_clear_line(tmp_path, make, why):
    setup = tmp_path / "s"
    setup.mkdir()
    make(setup / DB_NAME)
    before = (setup / DB_NAME).read_bytes()
    for argv in (["status"], ["execute", "--block"], ["write", "csv"], ["info"]):
        done = cli("--setup-dir", str(setup), *argv)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr == (f"ensemble: error: --setup-dir: '{setup / DB_NAME}' is not an ensemble database ({why}): "
                               "corrupted, or made by another program\n")
    with pytest.raises(EnsembleError, match="is not an ensemble database"):
        Ensemble(setup)
    assert (setup / DB_NAME).read_bytes() == before, "nothing is written to it"


def test_a_database_from_a_newer_ensemble_is_refused(edir):
    ens = create([run(0, sh("true"))])
    ens.store.conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    ens.close()
    with pytest.raises(EnsembleError, match="has schema version 99; this version of ensemble reads 3 and older"):
        Ensemble("setup")


def test_missing_and_non_executable_programs_fail_only_their_runs(edir):
    (edir / "notexec.sh").write_text("#!/bin/sh\necho hi\n")
    ens = create([run(0, sh("true")),
                  run(1, Step([str(edir / "missing-program")], batch_script=False)),
                  run(2, Step([str(edir / "notexec.sh")], batch_script=False))])
    execute(ens)
    rows = {r["id"]: r for r in ens.runs()}
    assert rows[1]["status"].label == "success"
    for run_id, path in ((2, "missing-program"), (3, "notexec.sh")):
        assert rows[run_id]["status"].label == "failure"
        assert path in rows[run_id]["message"], rows[run_id]["message"]
    assert integrity(ens) == "ok"


def test_a_run_directory_deleted_underneath_fails_or_recreates_only_that_run(edir):
    ens = create([run(0, sh('rm -rf "$ENSEMBLE_RUN_DIR/../2"; rm -rf "$ENSEMBLE_RUN_DIR"')), run(1, sh("true")),
                  run(2, sh("true"))])
    execute(ens, cores=1)
    rows = {r["id"]: r for r in ens.runs()}
    assert {r["status"].label for r in rows.values()} <= {"success", "failure"}
    assert rows[3]["status"].label == "success"
    if rows[2]["status"].label == "failure":
        assert "runs/2" in rows[2]["message"]
    assert all(a["end"] is not None for a in ens.attempts()), "no attempt left open"
    assert integrity(ens) == "ok"

"""Databases of schema 1 (before attempts recorded a resource manager's job id) still open."""
from __future__ import annotations

import sqlite3

from engine_helpers import create, execute, run, sh

from ensemble.results import summaries
from ensemble.store import DB_NAME, SCHEMA_VERSION, Store


def _make_version_1(setup_dir) -> None:
    conn = sqlite3.connect(setup_dir / DB_NAME)
    conn.execute("ALTER TABLE attempts DROP COLUMN job")
    conn.execute("DROP INDEX runs_by_sample_hash")
    conn.execute("ALTER TABLE runs DROP COLUMN sample_hash")
    conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.commit()
    conn.close()


def columns(setup_dir) -> list[str]:
    conn = sqlite3.connect(setup_dir / DB_NAME)
    try:
        return [row[1] for row in conn.execute("PRAGMA table_info(attempts)")]
    finally:
        conn.close()


def test_a_reader_leaves_an_old_database_as_it_is_and_a_writer_migrates_it(edir):
    ens = create([run(0, sh("true"))])
    execute(ens)
    ens.store.close()
    _make_version_1(ens.setup_dir)
    reader = Store.open(ens.setup_dir, readonly=True)
    assert reader.schema_version == 1
    assert [a["job"] for a in reader.attempts()] == [None]
    reader.close()
    assert "job" not in columns(ens.setup_dir), "a read-only open changes nothing"
    writer = Store.open(ens.setup_dir)
    assert writer.schema_version == SCHEMA_VERSION == 3
    assert writer.get_meta("schema_version") == 3
    assert [a["outcome"] for a in writer.attempts()] == ["success"]
    writer.close()
    assert columns(ens.setup_dir)[-1] == "job"


def test_summaries_read_an_old_database(edir):
    ens = create([run(0, sh("true")), run(1, sh("exit 1"))])
    execute(ens)
    ens.store.close()
    _make_version_1(ens.setup_dir)
    reader = Store.open(ens.setup_dir, readonly=True)
    try:
        attempts = summaries.attempts_dataframe(reader)
        runs = summaries.dataframe(reader)
    finally:
        reader.close()
    assert list(attempts["job"]) == [None, None]
    assert list(attempts["exit_code"]) == [0, 1]
    assert list(runs["status"]) == ["success", "failure"] and list(runs["attempts"]) == [1, 1]
    assert "job" not in columns(ens.setup_dir)

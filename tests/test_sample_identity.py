"""Sample identity: a stable hash per run; extending a study never duplicates a sample."""
from __future__ import annotations

import sqlite3

from engine_helpers import create, execute, run, sh

from ensemble import Ensemble, Run
from ensemble.spec.samplehash import hash_of_json, sample_hash
from ensemble.store import DB_NAME, Store


def test_the_hash_is_canonical():
    assert sample_hash({"x": 1, "y": "a"}) == sample_hash({"y": "a", "x": 1})
    assert sample_hash({"x": 1}) != sample_hash({"x": 1.0}), "JSON tells 1 and 1.0 apart"
    assert sample_hash({"x": (1, 2)}) == sample_hash({"x": [1, 2]})
    stored = '{"b": [1, {"d": 2, "c": 3}], "a": "\\u00e9"}'
    assert hash_of_json(stored) == sample_hash({"a": "é", "b": [1, {"c": 3, "d": 2}]})
    assert len(sample_hash({})) == 32


def test_every_run_stores_its_hash(edir):
    ens = create([run(k, sh("true")) for k in range(3)])
    rows = ens.store.conn.execute("SELECT sample, sample_hash FROM runs ORDER BY id").fetchall()
    assert [h for _, h in rows] == [hash_of_json(s) for s, _ in rows]
    assert len({h for _, h in rows}) == 3


def test_add_runs_skip_existing_leaves_out_known_and_repeated_samples(edir):
    ens = create([run(k, sh("true")) for k in range(3)])
    added = ens.add_runs([run(2, sh("true")), run(3, sh("true")), run(3, sh("true")), run(4, sh("true"))],
                         skip_existing=True)
    assert added == 2
    assert [r["sample"]["x"] for r in ens.runs()] == [0, 1, 2, 3, 4]
    assert ens.add_runs([run(0, sh("true"))]) == 1, "without skip_existing a sample may repeat"


def test_rerunning_a_driver_with_create_resume_is_idempotent(edir):
    def driver(xs):
        return Ensemble.create_resume(application="/bin/true", app_is_batch_script=False, setup_dir="study",
                                      runs=[Run({"x": x}) for x in xs], run_dir_names="runs/x{x}")

    ens = driver(range(3))
    execute(ens)
    ens.close()
    again = driver(range(5))
    assert [(r["sample"]["x"], r["status"].label) for r in again.runs()] == [
        (0, "success"), (1, "success"), (2, "success"), (3, "queued"), (4, "queued")]
    again.close()
    assert len(driver(range(5)).runs()) == 5


def test_an_older_database_gets_its_hashes_when_opened_for_writing(edir):
    ens = create([run(k, sh("true")) for k in range(2)])
    ens.close()
    conn = sqlite3.connect(edir / "setup" / DB_NAME)
    conn.execute("DROP INDEX runs_by_sample_hash")
    conn.execute("ALTER TABLE runs DROP COLUMN sample_hash")
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    store = Store.open(edir / "setup")
    assert store.schema_version == 3
    rows = store.conn.execute("SELECT sample, sample_hash FROM runs").fetchall()
    assert [h for _, h in rows] == [hash_of_json(s) for s, _ in rows]
    store.close()

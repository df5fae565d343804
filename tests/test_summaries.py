"""Ensemble summaries: DataFrame, CSV, JSON and YAML."""
from __future__ import annotations

import csv
import io
import json
import math

import pandas as pd
import pytest
import yaml
from conftest import SETUP, sql

from ensemble import Ensemble, Run, RunStatus

TRUE = "/bin/true"


def make(samples: list[dict]) -> Ensemble:
    return Ensemble.create(application=TRUE, app_is_batch_script=False, runs=[Run(s) for s in samples])


@pytest.fixture
def ens(workdir):
    """Four runs with different statuses, restarts, results and attempts."""
    ensemble = make([{"x": 1, "name": "a"}, {"x": 2, "name": "b"}, {"x": 3, "name": "c"}, {"x": 4, "name": "d"}])
    sql(SETUP, "UPDATE runs SET status=?, restarts=2 WHERE id=1", (int(RunStatus.SUCCESS),))
    sql(SETUP, "UPDATE runs SET status=?, message='exit 3' WHERE id=2", (int(RunStatus.FAILURE),))
    sql(SETUP, "UPDATE runs SET status=? WHERE id=3", (int(RunStatus.KILLED),))
    for start, end in ((1000.0, 1010.0), (1020.0, 1050.0)):
        sql(SETUP, "INSERT INTO attempts(run_id, step, attempt, manager, host, start, end, command) "
                   "VALUES (1, 0, 0, 'm', 'h', ?, ?, '[]')", (start, end))
    ensemble.set_result(1, {"energy": -1.5, "ok": True})
    ensemble.set_result(2, {"energy": 2.5, "ok": False})
    yield ensemble
    ensemble.close()


def test_dataframe_index_columns_and_values(ens, workdir):
    frame = ens.as_dataframe()
    assert frame.index.name == "run_id"
    assert list(frame.index) == [1, 2, 3, 4]
    assert list(frame.columns[:4]) == ["x", "name", "energy", "ok"]
    assert {"status", "restarts", "step", "attempts", "start", "end", "elapsed", "run_dir", "message"} \
        <= set(frame.columns)
    assert list(frame["x"]) == [1, 2, 3, 4]
    assert list(frame["name"]) == ["a", "b", "c", "d"]
    assert list(frame["status"]) == ["success", "failure", "killed", "queued"]
    assert list(frame["restarts"]) == [2, 0, 0, 0]
    assert list(frame["energy"][:2]) == [-1.5, 2.5]
    assert frame["energy"][3:].isna().all()
    assert frame.loc[2, "message"] == "exit 3"
    assert frame.loc[4, "run_dir"] == str(workdir / "runs" / "4")
    assert list(frame["attempts"]) == [2, 0, 0, 0]
    assert frame.loc[1, "start"] == pd.Timestamp(1000, unit="s", tz="UTC")
    assert frame.loc[1, "end"] == pd.Timestamp(1050, unit="s", tz="UTC")
    assert frame.loc[1, "elapsed"] == 50.0


def test_dataframe_include_none_false_drops_runs_without_result(ens):
    frame = ens.as_dataframe(include_none=False)
    assert list(frame.index) == [1, 2]
    assert list(frame["ok"]) == [True, False]


def test_dataframe_scalar_results_in_one_result_column(workdir):
    with make([{"x": 1}, {"x": 2}, {"x": 3}]) as ens:
        ens.set_result(1, 10)
        ens.set_result(2, "text")
        frame = ens.as_dataframe()
    assert list(frame.columns[:2]) == ["x", "result"]
    assert frame.loc[1, "result"] == 10
    assert frame.loc[2, "result"] == "text"
    assert frame.loc[3, "result"] is None or pd.isna(frame.loc[3, "result"])


def test_dataframe_mixed_dict_and_scalar_results(workdir):
    with make([{"x": 1}, {"x": 2}]) as ens:
        ens.set_result(1, {"a": 1})
        ens.set_result(2, 5)
        frame = ens.as_dataframe()
    assert frame.loc[1, "a"] == 1 and pd.isna(frame.loc[2, "a"])
    assert frame.loc[2, "result"] == 5 and pd.isna(frame.loc[1, "result"])


def test_result_key_collisions_are_prefixed(workdir):
    with make([{"x": 1, "result": "r"}, {"x": 2, "result": "s"}]) as ens:
        ens.set_result(1, {"x": 100, "status": "mine", "run_dir": "d", "run_id": 7, "y": 1})
        ens.set_result(2, 42)
        frame = ens.as_dataframe()
    assert list(frame["x"]) == [1, 2]
    assert list(frame["result"]) == ["r", "s"]
    assert frame.loc[1, "result_x"] == 100
    assert frame.loc[1, "result_status"] == "mine"
    assert frame.loc[1, "result_run_dir"] == "d"
    assert frame.loc[1, "result_run_id"] == 7
    assert frame.loc[1, "y"] == 1
    assert frame.loc[2, "result_result"] == 42
    assert list(frame["status"]) == ["queued", "queued"]
    assert "run_id" not in frame.columns


def test_sample_labels_named_like_builtin_columns_are_kept(workdir):
    with make([{"step": 0.5, "start": 10, "message": "hi"}]) as ens:
        frame = ens.as_dataframe()
    row = frame.loc[1]
    assert (row["sample_step"], row["sample_start"], row["sample_message"]) == (0.5, 10, "hi")
    assert (row["step"], row["message"]) == (0, None)


def test_empty_ensemble_summaries(workdir):
    with Ensemble.create() as ens:
        frame = ens.as_dataframe()
        assert frame.empty and frame.index.name == "run_id"
        out = io.StringIO()
        ens.write_json(out)
        assert json.loads(out.getvalue()) == []
        out = io.StringIO()
        ens.write_yaml(out)
        assert yaml.safe_load(out.getvalue()) == []
        out = io.StringIO()
        ens.write_csv(out)
        assert out.getvalue().splitlines() == ["run_id"]


def test_write_csv(ens, workdir):
    ens.set_result(3, {"energy": 0.0, "ok": True, "vec": [1, 2], "meta": {"k": "v"}})
    out = io.StringIO()
    ens.write_csv(out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["run_id"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["x"] for r in rows] == ["1", "2", "3", "4"]
    assert [r["status"] for r in rows] == ["success", "failure", "killed", "queued"]
    assert [float(r["energy"]) for r in rows[:3]] == [-1.5, 2.5, 0.0]
    assert rows[3]["energy"] == ""
    assert json.loads(rows[2]["vec"]) == [1, 2]
    assert json.loads(rows[2]["meta"]) == {"k": "v"}
    assert rows[0]["restarts"] == "2"
    assert rows[1]["message"] == "exit 3"
    assert rows[3]["run_dir"] == str(workdir / "runs" / "4")
    parsed = pd.read_csv(io.StringIO(out.getvalue()), index_col="run_id")
    assert list(parsed.index) == [1, 2, 3, 4]
    assert list(parsed["name"]) == ["a", "b", "c", "d"]


def test_write_json(ens, workdir):
    out = io.StringIO()
    ens.write_json(out)
    records = json.loads(out.getvalue())
    assert [r["run_id"] for r in records] == [1, 2, 3, 4]
    first = records[0]
    assert first["sample"] == {"x": 1, "name": "a"}
    assert first["result"] == {"energy": -1.5, "ok": True}
    assert (first["status"], first["restarts"], first["attempts"]) == ("success", 2, 2)
    assert (first["start"], first["end"], first["elapsed"]) == (1000.0, 1050.0, 50.0)
    assert first["run_dir"] == str(workdir / "runs" / "1")
    assert records[3]["result"] is None and records[3]["status"] == "queued"
    assert records[3]["start"] is None and records[3]["attempts"] == 0
    assert records[1]["message"] == "exit 3"


def test_write_yaml_matches_json(ens):
    json_out, yaml_out = io.StringIO(), io.StringIO()
    ens.write_json(json_out)
    ens.write_yaml(yaml_out)
    assert yaml.safe_load(yaml_out.getvalue()) == json.loads(json_out.getvalue())


def test_summaries_handle_non_finite_and_unicode(workdir):
    with make([{"x": 1, "label": "héllo"}]) as ens:
        ens.set_result(1, {"v": 1e300, "w": -0.0})
        frame = ens.as_dataframe()
        out = io.StringIO()
        ens.write_yaml(out)
    assert frame.loc[1, "label"] == "héllo"
    assert frame.loc[1, "v"] == 1e300
    assert math.copysign(1.0, frame.loc[1, "w"]) == -1.0
    assert yaml.safe_load(out.getvalue())[0]["sample"]["label"] == "héllo"

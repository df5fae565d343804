"""Ensemble summaries: DataFrame, CSV, JSON and YAML."""
from __future__ import annotations

import csv
import io
import json
import math
import sys

import pandas as pd
import pytest
import yaml
from conftest import SETUP, sql
from engine_helpers import create, execute, run, sh

from ensemble import Ensemble, EnsembleError, Run, RunStatus, SpecError
from ensemble.store import summary
from ensemble.store.lease import HOST

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
    assert list(frame.columns[4:]) == ["status", "restarts", "step", "attempts", "start", "end", "elapsed", "host",
                                       "run_dir", "message", "sample_hash"]
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
    assert frame.loc[1, "host"] == "h" and frame["host"][2:].isna().all()


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
        assert out.getvalue().splitlines() == [
            "run_id,result,status,restarts,step,attempts,start,end,elapsed,host,run_dir,message,sample_hash"]
        assert list(frame.columns) == out.getvalue().strip().split(",")[1:]
        assert frame["status"].dtype == "category" and frame["start"].dtype == "datetime64[ns, UTC]"


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


# -- an executed ensemble: columns, dtypes, attempts ---------------------------------------------------
@pytest.fixture
def executed(edir):
    """Three runs executed for real: a success with a result file, a failure restarted once, a success."""
    ens = create([run(1, sh("echo '{\"e\": 1.5, \"tag\": \"a\"}' > ensemble_result.json")),
                  run(2, sh("echo boom >&2; exit 3")),
                  run(3, sh("true"))], max_restarts=1)
    execute(ens)
    yield ens
    ens.close()


def test_dataframe_of_an_executed_ensemble(executed):
    frame = executed.as_dataframe()
    assert list(frame.columns) == ["x", "e", "tag", "status", "restarts", "step", "attempts", "start", "end",
                                   "elapsed", "host", "run_dir", "message", "sample_hash"]
    assert frame.index.name == "run_id" and frame.index.dtype == "int64"
    assert list(frame.index) == [1, 2, 3]
    assert frame["status"].dtype == "category"
    assert list(frame["status"].cat.categories) == ["queued", "success", "failure", "aborted", "killed"]
    assert list(frame["status"]) == ["success", "failure", "success"]
    for column in ("x", "restarts", "step", "attempts"):
        assert frame[column].dtype == "int64", column
    assert frame["e"].dtype == "float64" and frame.loc[1, "e"] == 1.5 and frame["e"][2:].isna().all()
    assert frame.loc[1, "tag"] == "a"
    assert list(frame["restarts"]) == [0, 1, 0] and list(frame["attempts"]) == [1, 2, 1]
    assert list(frame["step"]) == [1, 0, 1]
    assert frame["start"].dtype == frame["end"].dtype == "datetime64[ns, UTC]"
    attempts = executed.attempts_dataframe()
    second = attempts[attempts["run_id"] == 2]
    assert frame.loc[2, "start"] == second["start"].min() and frame.loc[2, "end"] == second["end"].max()
    assert frame["elapsed"].dtype == "float64"
    assert ((frame["end"] - frame["start"]).dt.total_seconds() - frame["elapsed"]).abs().max() < 1e-5
    assert set(frame["host"]) == {HOST}
    assert frame.loc[3, "run_dir"] == executed.runs([3])[0]["run_dir"]
    assert frame.loc[2, "message"] == executed.runs([2])[0]["message"] and pd.isna(frame.loc[1, "message"])


def test_attempts_dataframe(executed):
    frame = executed.attempts_dataframe()
    records = executed.attempts()
    assert list(frame.columns) == ["run_id", "step", "attempt", "manager", "host", "pid", "job", "start", "end",
                                   "exit_code", "signal", "outcome", "command", "placement"]
    assert len(frame) == len(records) == 4
    assert list(frame["run_id"]) == [a["run_id"] for a in records]
    assert list(frame["attempt"]) == [a["attempt"] for a in records]
    assert list(frame["exit_code"]) == [a["exit_code"] for a in records]
    assert list(frame[frame["run_id"] == 2]["exit_code"]) == [3, 3]
    assert list(frame["outcome"]) == [a["outcome"] for a in records]
    assert list(frame["command"]) == [a["command"] for a in records]
    assert list(frame["placement"]) == [a["placement"] for a in records]
    assert list(frame["pid"]) == [a["pid"] for a in records] and frame["pid"].dtype == "Int64"
    assert frame["exit_code"].dtype == frame["signal"].dtype == "Int64" and frame["signal"].isna().all()
    assert frame["job"].isna().all() and set(frame["host"]) == {HOST}
    assert set(frame["manager"]) == {records[0]["manager"]}
    for row, record in zip(frame.itertuples(), records):
        assert abs(row.start.timestamp() - record["start"]) < 1e-6
        assert abs(row.end.timestamp() - record["end"]) < 1e-6
    assert frame["start"].dtype == "datetime64[ns, UTC]"


def test_attempts_dataframe_of_an_ensemble_never_executed(workdir):
    with make([{"x": 1}]) as ens:
        frame = ens.attempts_dataframe()
    assert frame.empty and list(frame.columns)[:3] == ["run_id", "step", "attempt"]
    assert frame["start"].dtype == "datetime64[ns, UTC]" and frame["run_id"].dtype == "int64"


# -- filters, columns, chunks --------------------------------------------------------------------------
def test_filters_and_chosen_columns(ens):
    frame = ens.as_dataframe(statuses=["success", RunStatus.FAILURE], columns=["status", "x", "energy"])
    assert list(frame.columns) == ["status", "x", "energy"] and list(frame.index) == [1, 2]
    assert list(ens.as_dataframe(statuses="killed")["x"]) == [3]
    assert ens.as_dataframe(statuses=["aborted"]).empty
    frame = ens.as_dataframe(statuses=["killed"], columns=["energy", "run_id"])
    assert list(frame.columns) == ["energy"] and frame["energy"].isna().all(), "columns of the whole ensemble"
    with pytest.raises(ValueError, match="status: unknown status 'done'"):
        ens.as_dataframe(statuses=["done"])


def test_unknown_columns_are_an_error_listing_the_available_ones(ens):
    with pytest.raises(SpecError) as info:
        ens.as_dataframe(columns=["x", "nope", "energie"])
    assert str(info.value) == ("columns: unknown columns 'nope', 'energie' (available: run_id, x, name, energy, ok, "
                               "status, restarts, step, attempts, start, end, elapsed, host, run_dir, message, sample_hash)")
    out = io.StringIO()
    with pytest.raises(SpecError, match="unknown column 'nope'"):
        ens.write_csv(out, columns=["nope"])


def test_write_csv_with_filters_and_columns(ens, workdir):
    out = io.StringIO()
    ens.write_csv(out, statuses=["success", "failure"], columns=["status", "energy", "x"])
    assert out.getvalue().splitlines() == ["run_id,status,energy,x", "1,success,-1.5,1", "2,failure,2.5,2"]


def test_write_json_and_yaml_with_a_status_filter(ens):
    out = io.StringIO()
    ens.write_json(out, statuses=["failure"])
    assert [(r["run_id"], r["status"]) for r in json.loads(out.getvalue())] == [(2, "failure")]
    out = io.StringIO()
    ens.write_yaml(out, statuses=["aborted"])
    assert yaml.safe_load(out.getvalue()) == []


def test_chunk_boundaries_change_nothing(ens, workdir, monkeypatch):
    """Labels first seen in a later chunk, runs without attempts, filters: read 1, 2 or 3 runs at a time."""
    ens.add_runs([Run({"x": 5, "name": "e", "late": [1, 2]})])
    sql(SETUP, "INSERT INTO attempts(run_id, step, attempt, manager, host, start, end, command) "
               "VALUES (4, 0, 0, 'm', 'h4', 2000.0, NULL, '[]')")
    ens.set_result(5, 7)

    def outputs() -> tuple:
        texts = []
        for write in (ens.write_csv, ens.write_json, ens.write_yaml):
            out = io.StringIO()
            write(out)
            texts.append(out.getvalue())
        return ens.as_dataframe(), ens.as_dataframe(statuses=["queued", "success"]), *texts

    expected = outputs()
    assert list(expected[0].columns[:6]) == ["x", "name", "late", "energy", "ok", "result"]
    assert expected[0].loc[5, "late"] == [1, 2] and expected[0]["late"][:4].isna().all()
    assert (expected[0].loc[4, "attempts"], expected[0].loc[4, "host"]) == (1, "h4") and pd.isna(expected[0].loc[4, "end"])
    assert expected[2].splitlines()[0] == "run_id," + ",".join(expected[0].columns)
    for size in (1, 2, 3):
        monkeypatch.setattr(summary, "CHUNK", size)
        got = outputs()
        pd.testing.assert_frame_equal(got[0], expected[0])
        pd.testing.assert_frame_equal(got[1], expected[1])
        assert got[2:] == expected[2:]


def test_columns_follow_first_appearance_in_every_summary(workdir):
    with make([{"b": 1}, {"a": 2, "b": 3}, {"c": 0}]) as ens:
        ens.set_result(3, {"z": 1, "y": 2})
        ens.set_result(2, {"y": 3})
        frame = ens.as_dataframe()
        out = io.StringIO()
        ens.write_csv(out)
    assert list(frame.columns[:5]) == ["b", "a", "c", "y", "z"]
    assert out.getvalue().splitlines()[0] == "run_id," + ",".join(frame.columns)


# -- Parquet -------------------------------------------------------------------------------------------
def test_write_parquet(ens, workdir):
    pytest.importorskip("pyarrow", reason="write_parquet needs pyarrow (pip install pyarrow)")
    ens.set_result(3, {"energy": 0.5, "mixed": [1, "a"], "meta": {"k": "v"}})
    ens.write_parquet(workdir / "runs.parquet")
    back = pd.read_parquet(workdir / "runs.parquet")
    frame = ens.as_dataframe()
    assert back.index.name == "run_id" and list(back.index) == [1, 2, 3, 4]
    assert list(back.columns) == list(frame.columns)
    assert list(back["status"]) == ["success", "failure", "killed", "queued"]
    assert back["status"].dtype == "category" and back["start"].dtype == frame["start"].dtype
    assert back.loc[1, "start"] == frame.loc[1, "start"]
    assert list(back["energy"][:3]) == [-1.5, 2.5, 0.5]
    assert json.loads(back.loc[3, "mixed"]) == [1, "a"], "what Arrow cannot type is JSON text"
    ens.write_parquet(workdir / "few.parquet", statuses=["success"], columns=["x", "status"])
    few = pd.read_parquet(workdir / "few.parquet")
    assert list(few.columns) == ["x", "status"] and list(few.index) == [1]


def test_write_parquet_without_pyarrow_says_how_to_get_it(ens, workdir, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(EnsembleError, match=r"pip install pyarrow"):
        ens.write_parquet(workdir / "runs.parquet")
    assert not (workdir / "runs.parquet").exists()


def test_integer_results_and_labels_with_gaps_are_nullable_integers(workdir):
    big = 2**53 + 1  # float64 would make it 2**53
    with make([{"n": 1}, {"n": None}, {"n": big}]) as ens:
        ens.set_result(1, {"count": 3, "mixed": 1})
        ens.set_result(3, {"count": big, "mixed": 2.5})
        frame = ens.as_dataframe()
    assert str(frame["count"].dtype) == "Int64" and str(frame["n"].dtype) == "Int64"
    assert frame.loc[3, "count"] == big and frame.loc[3, "n"] == big and frame.loc[1, "count"] == 3
    assert frame["count"].isna().tolist() == [False, True, False] and pd.isna(frame.loc[2, "n"])
    assert frame["mixed"].dtype == "float64"  # an int and a float: a float column, as pandas infers


def test_integer_columns_without_gaps_stay_int64(workdir):
    with make([{"n": 1}, {"n": 2}]) as ens:
        frame = ens.as_dataframe()
    assert frame["n"].dtype == "int64"

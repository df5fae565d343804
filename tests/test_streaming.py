"""Runs are validated and inserted a batch at a time: ``create`` and ``add_runs`` never hold every
run at once, and a bad run anywhere still leaves nothing behind (no setup directory, no runs added)."""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator

import pytest
from conftest import snapshot

from ensemble import Ensemble, Run, SpecError, SpecTypeError, TemplateError
from ensemble.setup import control, intake
from ensemble.setup.intake import RunIntake
from ensemble.store import Store
from ensemble.store import runs as runs_queries

TRUE = shutil.which("true")
BATCH = 100


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 100 runs, so that a few thousand runs take many batches."""
    monkeypatch.setattr(intake, "BATCH_SIZE", BATCH)


@pytest.fixture
def inserts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """``(first id, rows)`` of every ``Store.insert_runs`` call."""
    calls: list[tuple[int, int]] = []
    real = Store.insert_runs

    def recording(self, first_id, rows):
        calls.append((first_id, len(rows)))
        real(self, first_id, rows)

    monkeypatch.setattr(Store, "insert_runs", recording)
    return calls


def make(runs, **options) -> Ensemble:
    options.setdefault("run_dir_names", "runs/{x}")
    return Ensemble.create(application=TRUE, app_is_batch_script=False, runs=runs, **options)


def numbered(n: int, start: int = 0) -> list[Run]:
    return [Run({"x": start + i}) for i in range(n)]


# -- create ----------------------------------------------------------------------------------------
def test_create_takes_runs_from_a_generator_one_batch_at_a_time(workdir, small_batches, monkeypatch):
    taken: list[int] = []
    pulled: list[int] = []  # runs taken from the generator when each batch was written
    real = Store.insert_runs

    def generate() -> Iterator[Run]:
        for i in range(3000):
            taken.append(i)
            yield Run({"x": i})

    def recording(self, first_id, rows):
        pulled.append(len(taken))
        real(self, first_id, rows)

    monkeypatch.setattr(Store, "insert_runs", recording)
    with make(generate()) as ens:
        assert ens.count_by_status() == 3000
        assert [(r["id"], r["sample"]["x"]) for r in ens.runs([1, 101, 3000])] == [(1, 0), (101, 100), (3000, 2999)]
        assert [e["detail"] for e in ens.events() if e["kind"] == "created"] == [{"runs": 3000}]
    assert pulled[:3] == [BATCH, 2 * BATCH, 3 * BATCH], "each batch is written before the next is taken"
    assert len(pulled) == 3000 // BATCH


BAD_RUNS = [
    ("not a run", SpecTypeError, r"runs\[2500\]: expected a Run"),
    (Run({"y": 1}), SpecError, "run_dir_names: 'runs/{x}' cannot be formatted for run 2501"),
    (Run({"x": 1, "run_id": 2}), SpecError, "sample of run 2501: label 'run_id' is reserved"),
]


@pytest.mark.parametrize(("bad", "kind", "message"), BAD_RUNS, ids=["type", "run_dir", "reserved"])
def test_a_bad_run_among_thousands_leaves_no_setup_directory(workdir, small_batches, inserts, bad, kind, message):
    runs = numbered(5000)
    runs[2500] = bad
    before = snapshot(workdir)
    with pytest.raises(kind, match=message):
        make(runs)
    assert len(inserts) == 25, "the runs before the bad one were written (to the temporary directory)"
    assert snapshot(workdir) == before
    assert not Ensemble.exists()
    assert not [p for p in os.listdir(workdir) if "creating" in p]


def test_a_bad_token_among_thousands_leaves_no_setup_directory(workdir, small_batches):
    (workdir / "deck.txt").write_text("x = %%x%%\n")
    runs = numbered(3000)
    runs[2999] = Run({"z": 1})
    before = snapshot(workdir)
    with pytest.raises(TemplateError, match="%%x%% is not a label of run 3000"):
        make(runs, run_parse="deck.txt", run_dir_names="runs/{run_id}")
    assert snapshot(workdir) == before


@pytest.mark.parametrize(("at", "repeats"), [(2500, 5), (50, 10)], ids=["earlier_batch", "same_batch"])
def test_a_repeated_run_dir_names_the_run_and_the_directory(workdir, small_batches, at, repeats):
    runs = numbered(3000)
    runs[at] = Run({"x": repeats})
    before = snapshot(workdir)
    with pytest.raises(SpecError) as info:
        make(runs)
    assert str(info.value) == (f"run_dir_names: 'runs/{{x}}' gives run {at + 1} the directory "
                               f"{str(workdir / 'runs' / str(repeats))!r}, which another run already has; "
                               "include {run_id} or more labels")
    assert snapshot(workdir) == before


# -- add_runs --------------------------------------------------------------------------------------
def test_add_runs_inserts_batch_by_batch_in_one_transaction(workdir, small_batches, inserts):
    with make(numbered(10)) as ens:
        generation = ens.store.generation()
        ens.add_runs(numbered(3000, start=100))
        assert ens.count_by_status() == 3010
        assert ens.runs([3010])[0]["sample"] == {"x": 3099}
        assert [e["detail"] for e in ens.events() if e["kind"] == "runs_added"] == [{"first": 11, "last": 3010}]
        assert ens.store.generation() == generation + 1
    assert inserts[1:4] == [(11, BATCH), (111, BATCH), (211, BATCH)]


@pytest.mark.parametrize(("bad", "kind", "message"), [
    (Run({"x": 3}), SpecError, f"gives run {10 + 2901} the directory"),
    ("not a run", SpecTypeError, r"runs\[2900\]"),
], ids=["repeats_an_existing_dir", "type"])
def test_add_runs_with_a_bad_run_late_adds_none(workdir, small_batches, inserts, bad, kind, message):
    with make(numbered(10)) as ens:
        generation = ens.store.generation()
        runs = numbered(3000, start=100)
        runs[2900] = bad
        with pytest.raises(kind, match=message):
            ens.add_runs(runs)
        assert len(inserts) > 20, "the batches before the bad run were inserted, then rolled back"
        assert ens.count_by_status() == 10
        assert [e for e in ens.events() if e["kind"] == "runs_added"] == []
        assert ens.store.generation() == generation
        ens.add_runs(numbered(5, start=100))
        assert ens.filter_by_status() == list(range(1, 16))


def test_runs_posted_to_a_manager_are_checked_and_written_batch_by_batch(workdir, small_batches):
    with make(numbered(10)) as ens:
        check = RunIntake(ens.config)
        runs = numbered(300, start=100)
        runs[250] = Run({"x": 4})
        with pytest.raises(SpecError, match=f"gives run {11 + 250} the directory"):
            control.post_runs(ens.setup_dir, check, runs, 11, ens.store)
        assert os.listdir(ens.setup_dir / "inbox") == [], "nothing posted, no temporary file left"
        control.post_runs(ens.setup_dir, check, [], 11, ens.store)
        assert control.pending(ens.setup_dir) == []
        control.post_runs(ens.setup_dir, check, numbered(250, start=100), 11, ens.store)
        (posted,) = control.pending(ens.setup_dir)
        command = json.loads(posted.read_text())
        assert (command["op"], len(command["runs"])) == ("add_runs", 250)
        assert command["runs"][0]["sample"] == {"x": 100}
        assert command["runs"][0]["steps"][0]["args"] == [TRUE]
        assert control.ingest(ens.store, ens.config, ens.setup_dir).added == 250
        assert ens.count_by_status() == 260


def test_runs_with_arguments_of_their_own_keep_the_caches_small(workdir, small_batches, monkeypatch):
    monkeypatch.setattr(intake, "CACHE_SIZE", 7)
    monkeypatch.setattr(runs_queries, "STEPSET_CACHE", 7)
    with make([Run({"x": i}, args=f"-n {i % 20}") for i in range(300)]) as ens:
        steps = {r["id"]: r["steps"] for r in ens.runs()}
        stepsets = ens.store.conn.execute("SELECT COUNT(*) FROM stepsets").fetchone()[0]
    assert all(steps[i + 1] == [{"args": [TRUE, "-n", str(i % 20)], "tasks": 1, "cores_per_task": 1,
                                 "gpus_per_task": 0, "timeout": 0.0, "batch_script": False, "cwd": "."}]
               for i in range(300))
    assert stepsets == 20, "a step set is stored once, whatever the caches forgot"

"""Execution engine and the application: interface hooks (called in worker processes) and the
runtime API a running step uses (``ensemble.runtime``)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from engine_helpers import (
    attempts_by_run,
    create,
    events,
    execute,
    run,
    run_row,
    sh,
    statuses,
)

from ensemble import CompositeRun, EnsembleError, Step
from ensemble.status import RunStatus

INTERFACE = '''
import os
from ensemble import runtime, CompositeRun, Step

ROOT = os.path.dirname(os.path.abspath(__file__))


def _log(name, text):
    with open(os.path.join(ROOT, name), "a") as f:
        f.write(text + "\\n")


def prep_ensemble(setup_dir):
    _log("prep_ensemble.log", setup_dir)


def prep_run(run_id, run_dir):
    with open("prepped", "w") as f:
        f.write(os.getcwd())


def post_run(run_id, sample, run_dir):
    if sample["x"] == 3:
        raise ValueError(f"boom from run {run_id}")
    if sample["x"] == 4:
        os._exit(7)
    return {"y": sample["x"] * 10, "cwd": os.getcwd(), "stdin": os.path.realpath("/proc/self/fd/0")}


def post_ensemble(setup_dir):
    _log("post_ensemble.log", "call")
    marker = os.path.join(ROOT, "added")
    if not os.path.exists(marker):
        open(marker, "w").close()
        runtime.add_runs([CompositeRun({"x": 100}, [Step(["sh", "-c", "cat prepped > step_saw"],
                                                         batch_script=False)])])
'''

STEP = "cat prepped > step_saw"


def test_hooks_lifecycle(edir):
    (edir / "iface.py").write_text(INTERFACE)
    ens = create([run(x, sh(STEP)) for x in (1, 2, 3, 4, 5)], app_interface="iface.py")
    ens.on_completion(["sh", "-c", "echo done >> on_completion.txt"])
    execute(ens, cores=2)

    status = statuses(ens)
    assert len(status) == 6, "post_ensemble's added run is part of the ensemble"
    added = run_row(ens, 6)
    assert added["sample"] == {"x": 100}
    assert added["status"] is RunStatus.SUCCESS, added["message"]
    assert added["result"]["y"] == 1000

    for run_id in (1, 2, 5, 6):
        row = run_row(ens, run_id)
        assert row["status"] is RunStatus.SUCCESS, row["message"]
        run_dir = Path(row["run_dir"])
        # prep_run ran in the run directory before step 0 (the step saw its file)
        assert (run_dir / "prepped").read_text() == row["run_dir"]
        assert (run_dir / "step_saw").read_text() == row["run_dir"]
        assert row["result"] == {"y": row["sample"]["x"] * 10, "cwd": row["run_dir"], "stdin": "/dev/null"}

    raised = run_row(ens, 3)
    assert raised["status"] is RunStatus.FAILURE
    assert "post_run" in raised["message"] and "boom from run 3" in raised["message"]
    hook_log = Path(raised["run_dir"], "ensemble.post_run.log").read_text()
    assert "Traceback" in hook_log and "ValueError: boom from run 3" in hook_log
    assert [a["outcome"] for a in attempts_by_run(ens)[3]] == ["success"], "the step itself succeeded"

    exited = run_row(ens, 4)
    assert exited["status"] is RunStatus.FAILURE
    assert "hook worker died" in exited["message"]

    frame = ens.as_dataframe()
    assert frame.loc[1, "y"] == 10 and frame.loc[5, "y"] == 50 and frame.loc[6, "y"] == 1000
    assert frame.loc[2, "cwd"] == run_row(ens, 2)["run_dir"]

    assert len((edir / "prep_ensemble.log").read_text().splitlines()) == 1
    # called when the queue drained, and again once the run it added had run
    assert (edir / "post_ensemble.log").read_text().splitlines() == ["call", "call"]
    assert (edir / "on_completion.txt").read_text() == "done\n"
    assert len(events(ens, "on_completion")) == 1

    # A second execution: prep_ensemble is not called again; the new run gets the hooks.
    ens.add_runs([CompositeRun({"x": 7}, [sh(STEP)])])
    execute(ens, cores=2)
    assert run_row(ens, 7)["status"] is RunStatus.SUCCESS
    assert run_row(ens, 7)["result"]["y"] == 70
    assert len((edir / "prep_ensemble.log").read_text().splitlines()) == 1
    assert (edir / "on_completion.txt").read_text() == "done\ndone\n"


def test_failing_prep_run_fails_only_its_run(edir):
    (edir / "iface.py").write_text(
        "def prep_run(sample):\n"
        "    if sample['x'] == 2:\n"
        "        raise RuntimeError('no input deck for 2')\n")
    ens = create([run(x, sh("touch ran")) for x in (1, 2, 3)], app_interface="iface.py")
    execute(ens, cores=1)
    row = run_row(ens, 2)
    assert row["status"] is RunStatus.FAILURE
    assert "prep_run" in row["message"] and "no input deck for 2" in row["message"]
    assert "RuntimeError: no input deck for 2" in Path(row["run_dir"], "ensemble.prep_run.log").read_text()
    assert 2 not in attempts_by_run(ens), "no step starts after prep_run failed"
    assert not Path(row["run_dir"], "ran").exists()
    assert run_row(ens, 1)["status"] is RunStatus.SUCCESS
    assert run_row(ens, 3)["status"] is RunStatus.SUCCESS


# -- the runtime API ---------------------------------------------------------------------------
APP = '''
import os, sys
from ensemble import runtime, CompositeRun, Step

ROOT = os.path.dirname(os.path.abspath(__file__))
rid = runtime.run_id()
sample = runtime.sample()
runtime.parse_file(os.path.join(ROOT, "deck.in"), "deck.out")
with open("deck.out") as f:
    deck = f.read().strip()
runtime.set_result({"rid": rid, "double": sample["x"] * 2, "deck": deck, "where": str(runtime.run_dir())})
if sample["x"] == 1:
    runtime.add_runs([CompositeRun({"x": 50}, [Step([sys.executable, __file__], batch_script=False)])])
if sample.get("stop"):
    runtime.stop_ensemble("enough")
'''


def app_step(edir: Path) -> Step:
    (edir / "app.py").write_text(APP)
    (edir / "deck.in").write_text("x = %%x%% in run %%run_id%%\n")
    return Step([sys.executable, str(edir / "app.py")], batch_script=False)


def test_runtime_api_from_a_step(edir):
    step = app_step(edir)
    ens = create([CompositeRun({"x": x}, [step]) for x in (1, 2, 3)])
    execute(ens, cores=2)

    assert statuses(ens) == {i: RunStatus.SUCCESS for i in (1, 2, 3, 4)}
    added = run_row(ens, 4)
    assert added["sample"] == {"x": 50}
    frame = ens.as_dataframe()
    for run_id, x in ((1, 1), (2, 2), (3, 3), (4, 50)):
        assert frame.loc[run_id, "rid"] == run_id
        assert frame.loc[run_id, "double"] == 2 * x
        assert frame.loc[run_id, "deck"] == f"x = {x} in run {run_id}"
        assert frame.loc[run_id, "where"] == run_row(ens, run_id)["run_dir"]
        assert Path(run_row(ens, run_id)["run_dir"], "deck.out").is_file()


def test_stop_ensemble_from_a_step(edir):
    step = app_step(edir)
    ens = create([CompositeRun({"x": x, "stop": x == 12}, [step]) for x in (11, 12, 13, 14, 15)])
    ens.on_completion(["sh", "-c", "touch on_completion_ran"])
    execute(ens, cores=1)

    status = statuses(ens)
    assert status[1] is RunStatus.SUCCESS and status[2] is RunStatus.SUCCESS
    assert all(status[i] is RunStatus.QUEUED for i in (3, 4, 5))
    assert sorted(attempts_by_run(ens)) == [1, 2]
    assert all(r["claimed_by"] is None for r in ens.runs())
    assert not ens.store.leases()
    assert run_row(ens, 2)["result"]["rid"] == 2
    assert [e["detail"] for e in events(ens, "stop_requested")] == ["enough"]
    assert not (edir / "on_completion_ran").exists()

    # Executing again finishes the rest (the old stop request does not stop the new manager).
    execute(ens, cores=1)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in (1, 2, 3, 4, 5)}
    assert (edir / "on_completion_ran").exists()


def test_stop_ensemble_from_a_hook(edir):
    (edir / "iface.py").write_text(
        "from ensemble import runtime\n"
        "def post_run(sample):\n"
        "    if sample['x'] == 2:\n"
        "        runtime.stop_ensemble('from post_run')\n"
        "    return sample['x']\n")
    ens = create([run(x, sh("true")) for x in (1, 2, 3, 4, 5)], app_interface="iface.py")
    execute(ens, cores=1, max_concurrency=1)  # one run at a time, hooks included

    status = statuses(ens)
    assert status[1] is RunStatus.SUCCESS and status[2] is RunStatus.SUCCESS
    assert run_row(ens, 2)["result"] == 2
    assert all(status[i] is RunStatus.QUEUED for i in (3, 4, 5)), "nothing launches after the stop request"
    assert sorted(attempts_by_run(ens)) == [1, 2]
    assert not list(edir.glob("runs/*/ensemble.db*")), "no database appears in run directories"


def test_failing_prep_ensemble_starts_nothing_and_is_retried(edir):
    iface = edir / "iface.py"
    iface.write_text("def prep_ensemble():\n    raise OSError('scratch space missing')\n")
    ens = create([run(x, sh("true")) for x in (1, 2)], app_interface="iface.py")
    with pytest.raises(EnsembleError, match="prep_ensemble.*scratch space missing"):
        execute(ens, cores=1)
    assert not ens.attempts()
    assert statuses(ens) == {1: RunStatus.QUEUED, 2: RunStatus.QUEUED}
    assert not ens.store.leases()
    assert "scratch space missing" in (ens.setup_dir / "logs" / "prep_ensemble.log").read_text()

    iface.write_text(f"def prep_ensemble():\n    open({str(edir / 'prepared')!r}, 'a').write('x')\n")
    execute(ens, cores=1)
    assert statuses(ens) == {1: RunStatus.SUCCESS, 2: RunStatus.SUCCESS}
    assert (edir / "prepared").read_text() == "x"

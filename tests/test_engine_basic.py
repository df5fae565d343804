"""Execution engine, basic rules: packing on cores and GPUs, composite steps, batch scripts,
timeouts and process groups, restarts, abort codes and the failed-runs limit.

Every test runs real processes; concurrency is judged from the recorded
attempts (start/end, placement) and from files the runs write, never from
wall-clock durations.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from engine_helpers import (
    attempts_by_run,
    create,
    events,
    execute,
    long_sleep,
    overlap,
    peak,
    pids_with,
    placed,
    proc_state,
    py,
    run,
    run_row,
    sh,
    start_detached,
    statuses,
    token,
    wait_file,
    wait_for,
    wait_manager_exit,
)

from ensemble import CompositeRun, Step
from ensemble.status import RunStatus

SLEEP = "sleep 0.3"


# -- packing ---------------------------------------------------------------------------------------
def test_cores_are_never_oversubscribed_and_runs_overlap(edir):
    shapes = [(1, 1), (1, 2), (2, 1), (1, 3), (2, 2), (4, 1), (1, 1), (3, 1), (1, 4), (1, 1), (2, 1), (1, 2)]
    runs = [run(i, sh(SLEEP, tasks=t, cores_per_task=c)) for i, (t, c) in enumerate(shapes)]
    runs.append(run("huge", sh("true", tasks=5)))
    ens = create(runs)
    execute(ens, cores=4)

    status = statuses(ens)
    huge = len(shapes) + 1
    assert status[huge] is RunStatus.FAILURE
    assert "never fit" in run_row(ens, huge)["message"]
    assert huge not in attempts_by_run(ens), "a step that can never fit must not start"
    assert all(status[i] is RunStatus.SUCCESS for i in range(1, huge))

    attempts = ens.attempts()
    assert len(attempts) == len(shapes)
    for a in attempts:
        tasks, cpt = shapes[a["run_id"] - 1]
        assert len(placed(a, "cores")) == tasks * cpt
        assert a["placement"][0]["tasks"] == tasks
    assert peak((a["start"], a["end"], tasks * cpt) for a in attempts
                for tasks, cpt in [shapes[a["run_id"] - 1]]) <= 4
    assert peak((a["start"], a["end"], 1) for a in attempts) >= 2, "no two runs ever ran at once"
    for a in attempts:
        for b in attempts:
            if a is not b and overlap(a, b):
                assert not set(placed(a, "cores")) & set(placed(b, "cores"))


def test_gpu_binding_is_disjoint_and_sized(edir):
    # (tasks, cores_per_task, gpus_per_task)
    shapes = [(1, 1, 1), (1, 1, 2), (2, 1, 1), (1, 2, 1), (2, 1, 2), (1, 1, 0), (1, 1, 1), (1, 1, 3), (1, 1, 2)]
    runs = [run(i, sh(f"env > env.txt; {SLEEP}", tasks=t, cores_per_task=c, gpus_per_task=g))
            for i, (t, c, g) in enumerate(shapes)]
    runs.append(run("too many gpus", sh("true", gpus_per_task=5)))
    ens = create(runs)
    execute(ens, cores=4, gpus=4)

    big = len(shapes) + 1
    assert run_row(ens, big)["status"] is RunStatus.FAILURE
    assert "never fit" in run_row(ens, big)["message"]
    by_run = attempts_by_run(ens)
    assert big not in by_run

    seen: dict[int, dict] = {}
    for run_id, (tasks, cpt, gpt) in enumerate(shapes, start=1):
        row = run_row(ens, run_id)
        assert row["status"] is RunStatus.SUCCESS, row["message"]
        env = dict(line.split("=", 1) for line in Path(row["run_dir"], "env.txt").read_text().splitlines()
                   if "=" in line)
        cuda = [int(g) for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g]
        rocr = [int(g) for g in env["ROCR_VISIBLE_DEVICES"].split(",") if g]
        assert len(cuda) == tasks * gpt
        assert rocr == cuda
        assert all(0 <= g < 4 for g in cuda)
        assert env["OMP_NUM_THREADS"] == str(cpt)
        [attempt] = by_run[run_id]
        assert sorted(int(g) for g in placed(attempt, "gpus")) == sorted(cuda)
        seen[run_id] = {**attempt, "gpu_set": set(cuda)}
    for a in seen.values():
        for b in seen.values():
            if a is not b and overlap(a, b):
                assert not a["gpu_set"] & b["gpu_set"], (a["run_id"], b["run_id"])
    assert peak((a["start"], a["end"], len(a["gpu_set"])) for a in seen.values()) <= 4
    assert peak((a["start"], a["end"], 1) for a in seen.values()) >= 2


# -- composite runs and batch scripts ---------------------------------------------------------------
def test_composite_steps_in_order_in_their_cwd_with_per_attempt_output(edir):
    record = 'echo "$ENSEMBLE_STEP $(pwd)" >> "$ENSEMBLE_RUN_DIR/order"'
    flaky = ('n=$(cat tries 2>/dev/null || echo 0); n=$((n+1)); echo $n > tries; '
             'echo "out of try $n"; echo "err of try $n" >&2; [ $n -ge 2 ]')
    steps = [sh(f"{record}; echo out0; echo err0 >&2", cwd="a"),
             sh(f"{record}; {flaky}", cwd="b/c"),
             sh(f"{record}; echo out2")]
    ens = create([run(1, *steps), run(2, *steps)], max_restarts=1)
    execute(ens, cores=2)

    for run_id in (1, 2):
        row = run_row(ens, run_id)
        assert row["status"] is RunStatus.SUCCESS, row["message"]
        assert row["restarts"] == 1
        d = Path(row["run_dir"])
        assert (d / "order").read_text().splitlines() == [
            f"0 {d / 'a'}", f"1 {d / 'b' / 'c'}", f"1 {d / 'b' / 'c'}", f"2 {d}"]
        attempts = attempts_by_run(ens)[run_id]
        assert [(a["step"], a["attempt"], a["outcome"]) for a in attempts] == [
            (0, 1, "success"), (1, 2, "failure"), (1, 3, "success"), (2, 4, "success")]
        for earlier, later in itertools.pairwise(attempts):
            assert earlier["end"] <= later["start"]
        outputs = sorted(p.name for p in d.glob("ensemble.step*"))
        assert outputs == sorted(f"ensemble.step{s}.attempt{n}.{ext}" for s, n in ((0, 1), (1, 2), (1, 3), (2, 4))
                                 for ext in ("out", "err"))
        assert (d / "ensemble.step0.attempt1.out").read_text() == "out0\n"
        assert (d / "ensemble.step0.attempt1.err").read_text() == "err0\n"
        assert (d / "ensemble.step1.attempt2.out").read_text() == "out of try 1\n"
        assert (d / "ensemble.step1.attempt2.err").read_text() == "err of try 1\n"
        assert (d / "ensemble.step1.attempt3.out").read_text() == "out of try 2\n"
        assert (d / "ensemble.step2.attempt4.out").read_text() == "out2\n"


def test_batch_script_is_parsed_into_the_step_cwd(edir):
    script = edir / "job.sh"
    script.write_text('#!/bin/sh\n%%ensemble_launch%% echo "x=%%x%% run=%%run_id%%"\necho "launch=[%%ensemble_launch%%]"\n'
                      'echo "cwd=$(pwd)"\n')
    ens = create([CompositeRun({"x": 7}, [Step(["job.sh"], cwd="work")]),
                  CompositeRun({"x": "abc"}, [Step(["job.sh", "extra"])])])
    execute(ens, cores=2)

    first, second = ens.runs()
    assert first["status"] is RunStatus.SUCCESS and second["status"] is RunStatus.SUCCESS
    parsed = Path(first["run_dir"], "work", "job.sh").read_text()
    assert "%%" not in parsed
    assert parsed.splitlines()[1] == ' echo "x=7 run=1"'
    assert Path(first["run_dir"], "ensemble.step0.attempt1.out").read_text().splitlines() == [
        "x=7 run=1", "launch=[]", f"cwd={Path(first['run_dir'], 'work')}"]
    assert Path(second["run_dir"], "ensemble.step0.attempt1.out").read_text().splitlines()[:2] == [
        "x=abc run=2", "launch=[]"]
    assert "%%x%%" in script.read_text(), "the original script must not be modified"


# -- timeouts and process groups --------------------------------------------------------------------
def test_timeout_kills_the_whole_process_group(edir):
    tok = token()
    gate = edir / "release"
    ens = create([run("t", sh(f"{long_sleep(tok)} & {long_sleep(tok)}", timeout=0.02)),
                  run("blocker", sh(wait_file(gate)))])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: pids_with(tok), "the timed-out run's sleeps to start")
    wait_for(lambda: run_row(ens, 1)["status"] is not RunStatus.QUEUED, "run 1 to time out")
    # The manager still runs (the blocker holds it), so this is the group kill, not the final sweep.
    assert proc_state(pid) not in (None, "Z")
    wait_for(lambda: not pids_with(tok), "the grandchild sleeps to be gone", deadline=10)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.FAILURE
    assert "timed out" in row["message"]
    [attempt] = attempts_by_run(ens)[1]
    assert attempt["outcome"] == "timeout"
    assert attempt["signal"] is not None
    gate.touch()
    wait_manager_exit(ens, pid)
    assert run_row(ens, 2)["status"] is RunStatus.SUCCESS


def test_escaped_grandchild_is_killed_when_its_step_ends(edir):
    """defect 10: a process that left its step's group with setsid dies when the step ends
    (the manager adopts it as child subreaper), not only when the manager exits."""
    tok = token()
    gate = edir / "release"
    escape = (f"setsid sh -c 'echo $$ > escaped.pid; exec {long_sleep(tok)}' & "
              "while [ ! -s escaped.pid ]; do sleep 0.05; done")
    ens = create([run("escape", sh(escape)), run("blocker", sh(wait_file(gate)))])
    pid = start_detached(ens, cores=2)
    wait_for(lambda: run_row(ens, 1)["status"] is RunStatus.SUCCESS, "the escaping step to end")
    escaped = int(Path(run_row(ens, 1)["run_dir"], "escaped.pid").read_text())
    wait_for(lambda: proc_state(escaped) in (None, "Z"), "the escaped process to be killed", deadline=10)
    assert proc_state(pid) not in (None, "Z"), "the manager is still running (run 2 waits on its gate)"
    gate.touch()
    wait_manager_exit(ens, pid)
    assert not pids_with(tok)


# -- restarts, aborts, failure limit ----------------------------------------------------------------------
def counter_step(fail_times: int, code: int = 1) -> Step:
    """Fails ``fail_times`` times (exit ``code``), then succeeds; state lives in the run directory."""
    return sh(f'n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; [ $n -ge {fail_times} ] || exit {code}')


def test_restarts_until_success(edir):
    ens = create([run(1, counter_step(2))], max_restarts=2)
    execute(ens, cores=1)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.SUCCESS
    assert row["restarts"] == 2
    attempts = attempts_by_run(ens)[1]
    assert [a["outcome"] for a in attempts] == ["failure", "failure", "success"]
    assert [a["exit_code"] for a in attempts] == [1, 1, 0]
    assert len(events(ens, "restart")) == 2


def test_restart_limit_exhausted_fails(edir):
    ens = create([run(1, counter_step(5))], max_restarts=1)
    execute(ens, cores=1)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.FAILURE
    assert row["restarts"] == 1
    assert "exited with 1" in row["message"]
    assert len(attempts_by_run(ens)[1]) == 2


def test_unlimited_restarts(edir):
    ens = create([run(1, counter_step(4))], max_restarts=None)
    execute(ens, cores=1)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.SUCCESS
    assert row["restarts"] == 4
    assert len(attempts_by_run(ens)[1]) == 5


def test_abort_on_code_aborts_without_restart(edir):
    ens = create([run(1, counter_step(3, code=3)), run(2, counter_step(1, code=4))], max_restarts=5, abort_on=[3])
    execute(ens, cores=2)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.ABORTED
    assert "abort_on" in row["message"]
    [attempt] = attempts_by_run(ens)[1]
    assert (attempt["outcome"], attempt["exit_code"]) == ("aborted", 3)
    assert run_row(ens, 2)["status"] is RunStatus.SUCCESS, "other exit codes are restarted"


def test_max_failed_runs_stops_launching_once_exceeded(edir):
    (edir / "iface.py").write_text(
        "import os\n"
        "def post_ensemble(setup_dir):\n"
        "    open(os.path.join(os.path.dirname(setup_dir), 'post_ensemble_ran'), 'w').close()\n")
    ens = create([run(i, sh("exit 1")) for i in range(10)], max_failed_runs=1, app_interface="iface.py")
    ens.on_completion(["sh", "-c", "touch on_completion_ran"])
    execute(ens, cores=1)

    status = statuses(ens)
    assert [i for i, s in status.items() if s is RunStatus.FAILURE] == [1, 2]
    assert all(status[i] is RunStatus.QUEUED for i in range(3, 11))
    assert sorted(attempts_by_run(ens)) == [1, 2]
    assert all(r["claimed_by"] is None for r in ens.runs())
    assert not ens.store.leases()
    assert any("max_failed_runs" in (e["detail"] or {}).get("reason", "") for e in events(ens, "stopping"))
    assert not (edir / "post_ensemble_ran").exists()
    assert not (edir / "on_completion_ran").exists()


def test_step_that_cannot_start_fails_at_once_and_frees_its_cores(edir):
    # A launch error is not retried, even with unlimited restarts (retrying could never help).
    missing = edir / f"no-such-program-{token()}"
    ens = create([run(1, Step([str(missing)], batch_script=False)), run(2, sh("true")), run(3, sh("true"))],
                 max_restarts=None)
    execute(ens, cores=1)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.FAILURE
    assert "could not start" in row["message"]
    assert [a["outcome"] for a in attempts_by_run(ens)[1]] == ["launch_error"]
    assert run_row(ens, 2)["status"] is RunStatus.SUCCESS
    assert run_row(ens, 3)["status"] is RunStatus.SUCCESS


def test_sample_and_run_environment_reach_the_step(edir):
    ens = create([CompositeRun({"x": 5, "name": "five"}, [py(
        "import json, os; json.dump({k: os.environ[k] for k in ('ENSEMBLE_RUN_ID', 'ENSEMBLE_RUN_DIR', "
        "'ENSEMBLE_SAMPLE', 'ENSEMBLE_STEP', 'ENSEMBLE_ATTEMPT', 'ENSEMBLE_SETUP_DIR')}, open('env.json', 'w'))")])])
    execute(ens, cores=1)
    row = run_row(ens, 1)
    env = json.loads(Path(row["run_dir"], "env.json").read_text())
    assert json.loads(env.pop("ENSEMBLE_SAMPLE")) == {"x": 5, "name": "five"}
    assert env == {"ENSEMBLE_RUN_ID": "1", "ENSEMBLE_RUN_DIR": row["run_dir"], "ENSEMBLE_STEP": "0",
                   "ENSEMBLE_ATTEMPT": "1", "ENSEMBLE_SETUP_DIR": str(ens.setup_dir)}


def test_binary_given_as_batch_script_still_runs(edir):
    with pytest.warns(UserWarning, match="not a text script"):
        ens = create([CompositeRun({"x": 1}, [Step(["/bin/echo", "hello", "%%x%%"])])])
    execute(ens, cores=1)
    row = run_row(ens, 1)
    assert row["status"] is RunStatus.SUCCESS, row["message"]
    assert Path(row["run_dir"], "ensemble.step0.attempt1.out").read_text() == "hello %%x%%\n"


def test_max_concurrency_caps_runs_in_flight(edir):
    ens = create([run(i, sh("sleep 0.1")) for i in range(4)])
    execute(ens, cores=4, max_concurrency=1)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, 5)}
    assert peak((a["start"], a["end"], 1) for a in ens.attempts()) == 1

"""``ensemble execute --block`` exit statuses: 0 all succeeded, 3 some failed, 5 work left."""
from __future__ import annotations

from engine_helpers import create, run, sh

from ensemble.cli import main
from ensemble.engine import EXIT_RUNS_FAILED, EXIT_WORK_LEFT


def execute_block(ens, *args: str) -> int:
    return main(["--setup-dir", str(ens.setup_dir), "execute", "--block", "--launcher", "local", *args])


def test_all_succeeded_is_zero(edir):
    ens = create([run(i, sh("true")) for i in range(1, 4)])
    assert execute_block(ens) == 0


def test_some_failed_is_three(edir):
    ens = create([run(1, sh("true")), run(2, sh("exit 9"))])
    assert execute_block(ens) == EXIT_RUNS_FAILED


def test_work_left_is_five(edir):
    # The timeout leaves 30 s: a step that may take a minute is not started (the walltime rule).
    ens = create([run(1, sh("true")), run(2, sh("true", timeout=1))])
    assert execute_block(ens, "--timeout", "0.5") == EXIT_WORK_LEFT
    assert [a["run_id"] for a in ens.attempts()] == [1]
    assert execute_block(ens) == 0, "the next execution does the work left"


def test_early_stop_needs_an_end_and_room(edir):
    ens = create([run(1, sh("true"))])
    assert execute_block(ens, "--early-stop", "1") == 2
    assert execute_block(ens, "--timeout", "0.5", "--early-stop", "1") == 2
    assert ens.attempts() == []


def test_python_api_returns_none_for_result_codes(edir):
    ens = create([run(1, sh("exit 9"))])
    assert ens.execute_local(blocking=True, launcher="local") is None


def test_early_stop_ahead_stops_launching_when_its_time_comes(edir):
    # The timeout leaves 30 s; early_stop 0.4 min stops launching 6 s after the start.  Run 1
    # holds the only core for 8 s, so run 2 could only start after launching has stopped.
    ens = create([run(1, sh("sleep 8")), run(2, sh("true"))])
    assert execute_block(ens, "--cores", "1", "--timeout", "0.5", "--early-stop", "0.4") == EXIT_WORK_LEFT
    assert [(a["run_id"], a["outcome"]) for a in ens.attempts()] == [(1, "success")]
    assert any("early_stop" in e["detail"]["reason"] for e in ens.events() if e["kind"] == "stopping")

"""Run directories and log files made ahead of launch (forced on with ENSEMBLE_PREFETCH=1)."""
from __future__ import annotations

import os
from pathlib import Path

from engine_helpers import attempts_by_run, create, execute, run, run_row, sh, statuses

from ensemble.engine.prefetch import Prefetcher, metadata_cost
from ensemble.status import RunStatus


def test_prefetched_logs_hold_each_attempts_output(edir, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_PREFETCH", "1")
    count = 'n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; echo "out $ENSEMBLE_RUN_ID.$ENSEMBLE_ATTEMPT"'
    fail_once = f'{count}; echo err >&2; [ "$ENSEMBLE_ATTEMPT" -ge 2 ]'
    ens = create([run(i, sh(fail_once), sh("echo second")) for i in range(1, 21)], max_restarts=1)
    execute(ens, cores=2)
    assert set(statuses(ens).values()) == {RunStatus.SUCCESS}
    for run_id, attempts in attempts_by_run(ens).items():
        assert [(a["step"], a["attempt"], a["outcome"]) for a in attempts] == [
            (0, 1, "failure"), (0, 2, "success"), (1, 3, "success")]
        run_dir = Path(run_row(ens, run_id)["run_dir"])
        assert (run_dir / "ensemble.step0.attempt1.out").read_text() == f"out {run_id}.1\n"
        assert (run_dir / "ensemble.step0.attempt2.out").read_text() == f"out {run_id}.2\n"
        assert (run_dir / "ensemble.step0.attempt2.err").read_text() == "err\n"
        assert (run_dir / "ensemble.step1.attempt3.out").read_text() == "second\n"
    log = (ens.setup_dir / "logs" / "manager.log").read_text()
    assert "prefetch forced on" in log and "exists already" not in log


def test_files_made_ahead_and_never_used_are_closed_and_reused_without_truncation(tmp_path):
    prefetch = Prefetcher(threads=2)
    run_dir = tmp_path / "runs" / "1"
    prefetch.ahead((1, 0, 1), str(run_dir), str(run_dir / "a.out"), str(run_dir / "a.err"))
    out, err = prefetch.take((1, 0, 1))
    os.write(out, b"kept\n")
    os.close(out)
    os.close(err)
    prefetch.ahead((1, 0, 1), str(run_dir), str(run_dir / "a.out"), str(run_dir / "a.err"))
    prefetch.close()
    assert (run_dir / "a.out").read_text() == "kept\n", "a log made again is appended to, never truncated"
    assert len(os.listdir(f"/proc/{os.getpid()}/fd")) < 64
    assert metadata_cost(tmp_path / "probe") > 0
    assert not list((tmp_path / "probe").iterdir()), "the probe leaves nothing behind"


def test_combined_layout_puts_both_streams_in_one_log(edir):
    ens = create([run(i, sh("echo out; echo err >&2")) for i in (1, 2)])
    execute(ens, cores=2, log_layout="combined")
    for run_id in (1, 2):
        run_dir = Path(run_row(ens, run_id)["run_dir"])
        assert sorted(p.name for p in run_dir.glob("ensemble.*")) == ["ensemble.step0.attempt1.log"]
        assert (run_dir / "ensemble.step0.attempt1.log").read_text() == "out\nerr\n"

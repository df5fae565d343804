"""``ensemble status --watch``: a live view that follows an executing ensemble and ends by itself."""
from __future__ import annotations

import subprocess
import sys

from engine_helpers import create, run, sh, start_detached, wait_file, wait_for, wait_manager_exit
from rich.console import Console

from ensemble.watch.terminal import Snapshot, Watcher, render


def test_watch_follows_an_executing_ensemble_and_ends_when_nothing_is_queued(edir):
    gate = edir / "gate"
    ens = create([run(k, sh(wait_file(gate))) for k in range(3)] + [run(9, sh("exit 4"))])
    pid = start_detached(ens, cores=4)
    wait_for(lambda: ens.count_running() == 3, "three runs to be running")
    watcher = subprocess.Popen([sys.executable, "-m", "ensemble", "--setup-dir", "setup", "status", "--watch",
                                "--interval", "0.1"], stdout=subprocess.PIPE, text=True, env={"COLUMNS": "120",
                                                                                                "PATH": "/usr/bin:/bin"})
    seen = [watcher.stdout.readline()]
    while "1/4 completed, 3 running, 0 waiting" not in seen[-1]:
        assert seen[-1], f"the watch ended early: {seen}"
        seen.append(watcher.stdout.readline())
    assert seen[0].startswith("━")
    gate.touch()
    out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, "it ends by itself once nothing is queued"
    assert any(line.startswith("4/4 completed, 0 running, 0 waiting") for line in out.splitlines())
    assert "success 3  failure 1  aborted 0  killed 0" in out
    assert "run 4: step 0 exited with 4" in out, "the last failures are shown"
    wait_manager_exit(ens, pid)


def test_render_lists_running_runs_with_elapsed_time():
    snap = Snapshot(1000.0, {"queued": 5, "running": 2, "success": 3, "failure": 0, "aborted": 0, "killed": 0,
                             "total": 8}, [(4, 0, 990.0), (6, 1, 400.0)], [])
    console = Console(record=True, width=100)
    console.print(render(snap, 0.5))
    text = console.export_text()
    assert "3/8 completed, 2 running, 3 waiting; 0.50 runs/s; eta 0:00:10" in text
    assert "│ 4   │ 0    │ 0:00:10 │" in text and "│ 6   │ 1    │ 0:10:00 │" in text


def test_rate_comes_from_completed_runs_over_time(edir):
    ens = create([run(0, sh("true"))])
    watcher = Watcher(ens)
    watcher.history.extend([(100.0, 0), (110.0, 5), (120.0, 20)])
    assert watcher.rate() == 1.0

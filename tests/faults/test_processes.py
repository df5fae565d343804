"""Processes that misbehave, and managers that race: a step whose children ignore SIGTERM or
escape with ``setsid``, and two managers started at the same moment."""
from __future__ import annotations

import subprocess
import sys
from collections import Counter

from engine_helpers import create, execute, pids_with, run, sh, statuses, token, wait_for

from ensemble.status import RunStatus


def test_children_that_ignore_sigterm_or_escape_are_gone_after_a_timeout(edir):
    tok = token()
    family = (f"sh -c 'trap \"\" TERM; sleep 290.{tok}' & "
              f"setsid sh -c 'exec sleep 290.{tok}' & "
              f"exec sleep 290.{tok}")
    ens = create([run(1, sh(family, timeout=0.02))], max_restarts=0)
    execute(ens, cores=1, kill_grace=0.3)
    attempt = ens.attempts(1)[0]
    assert attempt["outcome"] == "timeout"
    assert statuses(ens) == {1: RunStatus.FAILURE}
    wait_for(lambda: not pids_with(tok), "the step, its SIGTERM-proof child and its escaped child to be gone")


def start_cli(ens, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ensemble", "--setup-dir", str(ens.setup_dir), "execute",
                             "--cores", "2", "--timeout", "1", *options], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def runs_of(side) -> Counter:
    return Counter(int(line) for line in side.read_text().split())


def test_two_managers_started_at_once_never_both_run(edir):
    side = edir / "side.log"
    ens = create([run(i, sh(f'echo "$ENSEMBLE_RUN_ID" >> {side}; sleep 0.05')) for i in range(1, 31)])
    first, second = start_cli(ens), start_cli(ens)
    results = sorted([(p.wait(), p.stderr.read()) for p in (first, second)])
    assert [code for code, _ in results] == [0, 2], results
    assert "already executing" in results[1][1]
    wait_for(lambda: not ens.store.leases(), "the manager that won to finish", deadline=60)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, 31)}
    assert runs_of(side) == {i: 1 for i in range(1, 31)}
    assert len({a["manager"] for a in ens.attempts()}) == 1


def test_two_managers_started_at_once_with_allow_multiple_share_the_work(edir):
    side = edir / "side.log"
    ens = create([run(i, sh(f'echo "$ENSEMBLE_RUN_ID" >> {side}; sleep 0.2')) for i in range(1, 41)])
    managers = [start_cli(ens, "--allow-multiple"), start_cli(ens, "--allow-multiple")]
    assert [p.wait() for p in managers] == [0, 0]
    wait_for(lambda: not ens.store.leases(), "both managers to finish", deadline=60)
    assert statuses(ens) == {i: RunStatus.SUCCESS for i in range(1, 41)}
    assert runs_of(side) == {i: 1 for i in range(1, 41)}, "no run runs twice"
    shares = Counter(a["manager"] for a in ens.attempts())
    assert len(shares) == 2 and min(shares.values()) >= 5, f"both managers did work: {shares}"

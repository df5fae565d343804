"""``ensemble dryrun --show``: input-deck diffs, exact step command lines, and the fit check."""
from __future__ import annotations

import subprocess
import sys

from ensemble import Ensemble, Run


def cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", "s", *argv], capture_output=True,
                          text=True)


def test_show_prints_deck_diffs_and_srun_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.deck").write_text("mesh = fine\nx = %%x%%\n")
    Ensemble.create(application="/bin/echo", runs=[Run({"x": 1}, tasks=6, cores_per_task=2), Run({"x": 2})],
                    run_parse="input.deck", app_is_batch_script=False, setup_dir="s").close()
    done = cli("dryrun", "--show", "--launcher", "srun", "--nodes", "2", "--cores-per-node", "8")
    assert done.returncode == 0, done.stderr
    deck = tmp_path / "runs" / "1" / "input.deck"
    assert done.stdout.splitlines() == [
        "target: launcher srun on 2 node(s) x 8 cores x 0 gpus",
        "run 1: runs/1",
        f"  --- {tmp_path / 'input.deck'}",
        f"  +++ {deck}",
        "  @@ -2 +2 @@",
        "  -x = %%x%%",
        "  +x = 1",
        "  step 0: srun --exact -N 2 -n 6 -c 2 --gres=none -m arbitrary -w node1,node1,node1,node1,node2,node2 "
        "--kill-on-bad-exit=1 /bin/echo",
        "run 2: runs/2",
        f"  --- {tmp_path / 'input.deck'}",
        f"  +++ {tmp_path / 'runs' / '2' / 'input.deck'}",
        "  @@ -2 +2 @@",
        "  -x = %%x%%",
        "  +x = 2",
        "  step 0: srun --exact -N 1 -n 1 -c 1 --gres=none -w node1 --kill-on-bad-exit=1 /bin/echo",
    ]


def test_a_step_that_can_never_fit_is_reported_and_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Ensemble.create(application="/bin/true", runs=[Run({"x": 1}, tasks=3, gpus_per_task=1)],
                    app_is_batch_script=False, setup_dir="s").close()
    done = cli("dryrun", "--show", "--launcher", "flux", "--nodes", "1", "--cores-per-node", "4",
               "--gpus-per-node", "2")
    assert done.returncode == 2
    assert "  step 0: DOES NOT FIT: 3 tasks x 1 cores x 1 gpus on 4 cores, 2 gpus in 1 node(s)" in done.stdout
    assert done.stderr == ("ensemble: error: 1 step(s) can never fit the target (launcher flux on 1 node(s) x 4 "
                           "cores x 2 gpus)\n")


def test_dry_run_offers_every_launcher_a_manager_takes_but_auto():
    from ensemble.cli.dryshow import LAUNCHERS
    from ensemble.spec.options import LAUNCHER_CHOICES

    assert set(LAUNCHERS) == set(LAUNCHER_CHOICES) - {"auto"}

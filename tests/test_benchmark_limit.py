"""``benchmarks/limit.py``: the floor loop does ensemble's per-run file work, and a small run of the
whole benchmark reports both file systems with consistent ratios (no figure is judged here)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LIMIT = Path(__file__).resolve().parents[1] / "benchmarks" / "limit.py"


def test_the_python_floor_loop_makes_what_ensemble_makes_per_run(tmp_path):
    (tmp_path / "runs").mkdir()
    subprocess.run([sys.executable, str(LIMIT), "--loop", "7", "2"], cwd=tmp_path, check=True)
    runs = sorted((tmp_path / "runs").iterdir(), key=lambda p: int(p.name))
    assert [p.name for p in runs] == [str(i) for i in range(1, 8)]
    for run_dir in runs:
        assert sorted(p.name for p in run_dir.iterdir()) == ["ensemble.step0.attempt1.err",
                                                              "ensemble.step0.attempt1.out"]


def test_a_small_run_reports_both_file_systems(tmp_path):
    done = subprocess.run([sys.executable, str(LIMIT), "--runs", "12", "--repeat", "1", "--dir", str(tmp_path),
                           "--json"], capture_output=True, text=True, check=True, timeout=300)
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["fs"].split(" (")[0] for r in rows] == ["disk", "/dev/shm"]
    for r in rows:
        assert all(r[k] > 0 for k in ("ensemble", "no_spawner", "floor_python", "xargs", "end_to_end"))
        assert r["floor"] == max(x for x in (r["floor_python"], r["floor_c"]) if x)
        assert r["ensemble_over_floor"] == r["ensemble"] / r["floor"]
        assert r["ensemble_over_xargs"] == r["ensemble"] / r["xargs"]
    assert not list(tmp_path.iterdir()), "the benchmark leaves nothing behind"

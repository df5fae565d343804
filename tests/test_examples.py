"""The examples in examples/ run and produce what they say (outputs checked, not just exit codes)."""
from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

from ensemble import Ensemble

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, work: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), str(work)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_grid_sweep_results_and_heat_map(tmp_path):
    out = run_example("grid_sweep/sweep.py", tmp_path)
    df = Ensemble(tmp_path / "sweep.ens").as_dataframe()
    assert len(df) == 35 and (df["status"] == "success").all()
    for _, row in df.iterrows():
        assert row["value"] == math.sin(row["x"]) * math.cos(row["y"]) + 0.1 * row["x"]
    assert "best value 1.1475 at x=1.5, y=0.0" in out
    assert png_size(tmp_path / "sweep.png") == (600, 400)


def test_refinement_rounds_from_post_ensemble(tmp_path):
    out = run_example("refine/refine.py", tmp_path)
    df = Ensemble(tmp_path / "refine.ens").as_dataframe()
    assert len(df) == 17 and (df["status"] == "success").all()
    assert sorted(df.groupby("round").size().tolist()) == [4, 4, 4, 5]
    assert df.loc[df["f"].idxmin(), "x"] == 0.375
    assert "17 runs (17 succeeded) in 4 rounds; best x = 0.3750" in out


def test_input_deck_parsed_copied_and_linked(tmp_path):
    run_example("input_deck/deck.py", tmp_path)
    run3 = tmp_path / "runs" / "3"
    assert "viscosity   = 0.01\nresolution  = 16\n" in (run3 / "solver.in").read_text()
    assert (run3 / "material.dat").read_text() == "density 1000.0\n"
    assert (run3 / "mesh").is_symlink() and (run3 / "mesh" / "box.msh").is_file()
    assert json.loads((run3 / "ensemble_result.json").read_text()) == {"reynolds": 1000.0 * 16 * 1 / 0.01}


def test_demo_gives_results_through_the_result_file(tmp_path):
    out = run_example("demo.py", tmp_path)
    df = Ensemble(tmp_path / "demo.ens").as_dataframe()
    assert df["product"].tolist() == [x * y for x in range(1, 4) for y in (10, 20)]
    assert "runs/1/output.txt says: x=1 y=10" in out

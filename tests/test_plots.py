"""``ensemble plot``: the PNG files exist with their size, and the data behind them is right."""
from __future__ import annotations

import struct
import subprocess
import sys

import pytest
from engine_helpers import create, execute, run, sh

from ensemble.errors import EnsembleError, SpecError
from ensemble.watch import plots


def png_size(path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.fixture
def executed(edir):
    ens = create([run(k, sh(f"sleep 0.2; echo '{{\"v\": {k * k}}}' > ensemble_result.json")) for k in range(4)]
                 + [run(9, sh("exit 1", cores_per_task=2))])
    execute(ens, cores=2)
    return ens


def test_timeline_has_a_bar_per_attempt_and_core(executed, edir):
    bars = plots.plot_timeline(executed, edir / "t.png")
    assert png_size(edir / "t.png") == (900, 500)
    assert sorted((b.run_id, b.outcome) for b in bars) == [(1, "success"), (2, "success"), (3, "success"),
                                                            (4, "success"), (5, "failure"), (5, "failure")]
    assert {b.lane.rsplit(":", 1)[1] for b in bars} == {"0", "1"}
    assert all(0 <= b.start < b.end for b in bars)


def test_utilization_never_exceeds_the_cores(executed, edir):
    times, busy, available = plots.plot_utilization(executed, edir / "u.png")
    assert png_size(edir / "u.png") == (900, 500)
    assert available == 2 and max(busy) == 2 and busy[-1] == 0
    assert times == sorted(times) and times[0] == 0


def test_results_against_a_sample_column(executed, edir):
    data = plots.plot_results(executed, edir / "r.png", "x", "v")
    assert data == {"success": ([0, 1, 2, 3], [0, 1, 4, 9])}
    with pytest.raises(SpecError, match="plot results: no column 'nope'"):
        plots.results_data(executed, "x", "nope")


def test_cli_writes_the_file(executed, edir):
    done = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", "setup", "plot", "timeline", "-o",
                           "c.png"], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "wrote c.png\n")
    assert png_size(edir / "c.png") == (900, 500)
    bad = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", "setup", "plot", "results", "-o", "r.png"],
                         capture_output=True, text=True)
    assert (bad.returncode, bad.stderr) == (2, "ensemble: error: plot results: give the columns with --x and --y\n")


def test_without_matplotlib_the_error_says_what_to_install(executed, edir, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(EnsembleError, match=r"plot: matplotlib is not installed \(pip install 'ensemble\[plots\]'\)"):
        plots.plot_timeline(executed, edir / "x.png")

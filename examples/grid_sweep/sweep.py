"""A 2-D grid sweep: 7 x 5 runs of a small "solver", their results as a DataFrame and a heat map.

    python examples/grid_sweep/sweep.py [WORKDIR]

Writes ``<WORKDIR>/sweep.png`` (matplotlib, ``pip install 'ensemble[plots]'``) and prints the
best point.  Each run is a Python program that writes its result file.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from ensemble import CompositeRun, Ensemble, Step
from ensemble.params import grid

SOLVER = r"""
import json, math, sys
x, y = float(sys.argv[1]), float(sys.argv[2])
value = math.sin(x) * math.cos(y) + 0.1 * x
json.dump({"value": value}, open("ensemble_result.json", "w"))
"""
XS = [0.5 * k for k in range(7)]
YS = [0.75 * k for k in range(5)]


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ensemble-sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = [CompositeRun(s, [Step([sys.executable, "-c", SOLVER, str(s["x"]), str(s["y"])], batch_script=False)])
            for s in grid(x=XS, y=YS)]
    ens = Ensemble.create_overwrite(runs=runs, setup_dir=work / "sweep.ens",
                                    run_dir_names=str(work / "runs" / "x{x}_y{y}"))
    ens.execute_local(blocking=True)
    df = ens.as_dataframe()
    table = df.pivot(index="y", columns="x", values="value")
    best = df.loc[df["value"].idxmax()]
    print(f"{len(df)} runs, {int((df['status'] == 'success').sum())} succeeded; "
          f"best value {best['value']:.4f} at x={best['x']}, y={best['y']}")
    plot(table, work / "sweep.png")
    print(f"heat map: {work / 'sweep.png'}")


def plot(table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    image = ax.imshow(table.values, origin="lower", aspect="auto",
                      extent=(min(XS), max(XS), min(YS), max(YS)), cmap="viridis")
    fig.colorbar(image, ax=ax, label="value")
    ax.set(xlabel="x", ylabel="y", title="sin(x) cos(y) + 0.1 x")
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""Application interface of the refinement study: after each round, add runs around the best point."""
import sys

from ensemble import CompositeRun, Ensemble, Step, runtime

ROUNDS = 3
POINTS = 4


def objective_step(x: float) -> Step:
    code = f"import json; json.dump({{'f': ({float(x)!r} - 0.37) ** 2}}, open('ensemble_result.json', 'w'))"
    return Step([sys.executable, "-c", code], batch_script=False)


def post_ensemble(setup_dir):
    """Called each time the queue drains: refine around the best x until ROUNDS are done."""
    df = Ensemble(setup_dir).as_dataframe()
    last = int(df["round"].max())
    if last >= ROUNDS:
        return
    best = df.loc[df["f"].idxmin()]
    spacing = float(df.loc[df["round"] == last, "h"].iloc[0]) / 2
    xs = [float(best["x"]) + spacing * k for k in (-2, -1, 1, 2)][:POINTS]
    runtime.add_runs([CompositeRun({"x": round(x, 6), "round": last + 1, "h": spacing}, [objective_step(x)])
                      for x in xs])

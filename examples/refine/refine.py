"""An iterative study: five coarse runs, then three rounds of refinement that ``post_ensemble``
adds around the best point from the results so far.

    python examples/refine/refine.py [WORKDIR]
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from interface import objective_step  # noqa: E402

from ensemble import CompositeRun, Ensemble  # noqa: E402


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ensemble-refine-"))
    work.mkdir(parents=True, exist_ok=True)
    coarse = [CompositeRun({"x": x, "round": 0, "h": 0.25}, [objective_step(x)]) for x in (0.0, 0.25, 0.5, 0.75, 1.0)]
    ens = Ensemble.create_overwrite(runs=coarse, setup_dir=work / "refine.ens", run_dir_names=str(work / "runs/{run_id}"),
                                    app_interface=str(Path(__file__).parent / "interface.py"))
    ens.execute_local(blocking=True)
    df = ens.as_dataframe()
    best = df.loc[df["f"].idxmin()]
    ok = int((df["status"] == "success").sum())
    print(f"{len(df)} runs ({ok} succeeded) in {int(df['round'].max()) + 1} rounds; "
          f"best x = {best['x']:.4f} (f = {best['f']:.2e})")
    for round_, group in df.groupby("round"):
        print(f"  round {round_}: x = {', '.join(f'{x:g}' for x in group['x'])}")


if __name__ == "__main__":
    main()

"""Input decks: ``solver.in`` is parsed per run (``%%viscosity%%``, ``%%resolution%%``), the
material file is copied and the mesh directory symlinked into every run directory.

    python examples/input_deck/deck.py [WORKDIR]
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ensemble import CompositeRun, Ensemble, Step

HERE = Path(__file__).resolve().parent


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ensemble-deck-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(HERE)  # run_parse / run_copy / run_symlink paths are relative to where create is called
    runs = [CompositeRun({"viscosity": nu, "resolution": n},
                         [Step([sys.executable, str(HERE / "solver.py")], batch_script=False)])
            for nu in (1e-3, 1e-2) for n in (16, 32)]
    ens = Ensemble.create_overwrite(runs=runs, setup_dir=work / "deck.ens", run_dir_names=str(work / "runs/{run_id}"),
                                    run_parse="solver.in", run_copy="material.dat", run_symlink="mesh")
    ens.execute_local(blocking=True)
    print((work / "runs" / "3" / "solver.in").read_text(), end="")
    print(ens.as_dataframe()[["viscosity", "resolution", "reynolds", "status"]].to_string())


if __name__ == "__main__":
    main()

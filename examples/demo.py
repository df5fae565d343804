"""Demo: create a small ensemble of a templated shell script and inspect it."""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ensemble import Ensemble, Run

SCRIPT = """#!/bin/bash
# %%x%% and %%y%% are filled in per run
echo "x=%%x%% y=%%y%%" > output.txt
"""


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="ensemble-demo-"))
    os.chdir(work)
    Path("simulate.sh").write_text(SCRIPT)
    Path("simulate.sh").chmod(0o755)
    runs = [Run({"x": x, "y": y}) for x in range(3) for y in ("a", "b")]
    ens = Ensemble.create(application="simulate.sh", runs=runs, setup_dir="demo.ens")
    ens.dry_run()
    print(f"demo ensemble in {work}")
    print("progress:", ens.progress())
    print((work / "runs/1/simulate.sh").read_text())
    ens.write_csv(sys.stdout)


if __name__ == "__main__":
    main()

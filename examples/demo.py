"""Demo: create an ensemble of a templated shell script, execute it locally, show the results.

    python examples/demo.py [WORKDIR]
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ensemble import Ensemble, Run

SCRIPT = r"""#!/bin/bash
# %%x%% and %%y%% are filled in per run; the run's result is the JSON of its result file
echo "x=%%x%% y=%%y%%" > output.txt
echo "{\"product\": $((%%x%% * %%y%%))}" > ensemble_result.json
"""


def main() -> None:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="ensemble-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    Path("simulate.sh").write_text(SCRIPT)
    Path("simulate.sh").chmod(0o755)
    runs = [Run({"x": x, "y": y}) for x in range(1, 4) for y in (10, 20)]
    ens = Ensemble.create_overwrite(application="simulate.sh", runs=runs, setup_dir="demo.ens", max_restarts=1)
    ens.execute_local(blocking=True)
    print(f"demo ensemble in {work}; runs/1/output.txt says: {(work / 'runs/1/output.txt').read_text().strip()}")
    for command in (["status"], ["write", "csv"]):
        print(f"$ ensemble --setup-dir demo.ens {' '.join(command)}", flush=True)
        subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", "demo.ens", *command], check=True)


if __name__ == "__main__":
    main()

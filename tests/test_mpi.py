"""Real MPI programs (mpi4py) as steps: through ``mpirun`` on this machine, and through
``srun --mpi=pmix`` across two nodes of the Slurm testbed.

Without mpi4py or mpirun these tests skip with the reason; with ``CI=true`` they fail instead.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest
from engine_helpers import create, execute, run, statuses
from slurm_helpers import batch_script

from ensemble import Step
from ensemble.status import RunStatus

#: Each rank writes ``rank<r>.txt`` with its rank, the world size and its Slurm node.
RANKS = """\
import os
from mpi4py import MPI
comm = MPI.COMM_WORLD
with open(f"rank{comm.Get_rank()}.txt", "w") as out:
    out.write(f"{comm.Get_rank()} {comm.Get_size()} {os.environ.get('SLURMD_NODENAME', '-')}\\n")
"""


@pytest.fixture
def ranks_program(edir: Path) -> Path:
    missing = [what for what, ok in (("mpi4py", importlib.util.find_spec("mpi4py")),
                                     ("mpirun", shutil.which("mpirun"))) if not ok]
    if missing:
        reason = f"MPI tests need {' and '.join(missing)} (pip install -e '.[mpi]'; apt-get install openmpi-bin)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"MPI tests cannot be skipped in CI: {reason}")
        pytest.skip(reason)
    path = edir / "ranks.py"
    path.write_text(RANKS)
    return path


def rank_reports(run_dir: str) -> list[tuple[int, int, str]]:
    """(rank, size, node) of every rank, by rank."""
    reports = [line.split() for p in Path(run_dir).glob("rank*.txt") for line in p.read_text().splitlines()]
    return sorted((int(r), int(size), node) for r, size, node in reports)


def test_mpirun_starts_one_world_of_four_ranks(ranks_program):
    ens = create([run(1, Step([sys.executable, str(ranks_program)], tasks=4, batch_script=False))])
    execute(ens, launcher="mpirun", cores=4)
    assert statuses(ens) == {1: RunStatus.SUCCESS}
    (attempt,) = ens.attempts()
    assert attempt["command"][:3] == ["mpirun", "-np", "4"]
    assert rank_reports(ens.runs()[0]["run_dir"]) == [(r, 4, "-") for r in range(4)]


def test_srun_pmix_world_spans_two_nodes(ranks_program, slurm):
    # 4 tasks x 3 CPUs cannot fit one 8-CPU node: the manager must place 2 + 2 on two nodes.
    ens = create([run(1, Step([sys.executable, str(ranks_program)], tasks=4, cores_per_task=3,
                              batch_script=False))])
    # ENSEMBLE_MPI chooses --mpi (no option given).  Every testbed node is the same machine with the
    # same host name: Open MPI's shared-memory transport would mix up ranks of different nodes.
    script = batch_script(ranks_program.parent / "job.sh", ens.setup_dir,
                          before="export ENSEMBLE_MPI=pmix OMPI_MCA_btl=self,tcp")
    _, code = slurm.sbatch_wait(script, ranks_program.parent / "out", "-N", "2", "--exclusive", "-t", "5")
    assert code == 0, (ranks_program.parent / "out").read_text()
    assert statuses(ens) == {1: RunStatus.SUCCESS}
    (attempt,) = ens.attempts()
    assert "--mpi=pmix" in attempt["command"]
    reports = rank_reports(ens.runs()[0]["run_dir"])
    assert [(r, size) for r, size, _ in reports] == [(r, 4) for r in range(4)]
    per_node = {s["node"]: s["tasks"] for s in attempt["placement"]}
    assert len(per_node) == 2
    assert {node: sum(1 for *_, n in reports if n == node) for node in per_node} == per_node

"""Slurm job steps: ``srun`` with the placement the manager chose."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ensemble.launchers.base import Launcher
from ensemble.resources import Placement
from ensemble.spec import Step


@dataclass
class SrunLauncher(Launcher):
    """``srun --exact`` on exactly the nodes, task counts and CPUs the manager placed the step on.

    ``mpi`` is passed as ``--mpi=<mpi>`` (None: Slurm's ``MpiDefault``).  A step spread unevenly
    over several nodes gets ``-m arbitrary`` with one node name per task, so every node runs the
    number of tasks the manager counted for it.  The step's ``timeout`` becomes ``-t`` (whole
    minutes, rounded up, plus one): a backstop for a step the manager could not kill, late enough
    that the manager's own timeout always acts first and records the attempt as timed out.
    """

    mpi: str | None = None
    name = "srun"

    def prefix(self, step: Step, placement: Placement) -> list[str]:
        shares = placement.shares
        words = ["srun", "--exact", "-N", str(len(shares)), "-n", str(step.tasks), "-c", str(step.cores_per_task)]
        if step.gpus_per_task:
            words += [f"--gpus-per-task={step.gpus_per_task}"]
        if len({s.tasks for s in shares}) > 1:
            words += ["-m", "arbitrary", "-w", ",".join(s.node for s in shares for _ in range(s.tasks))]
        else:
            words += ["-w", ",".join(s.node for s in shares)]
        if step.timeout:
            words += ["-t", str(math.ceil(step.timeout) + 1)]
        if self.mpi:
            words += [f"--mpi={self.mpi}"]
        return [*words, "--kill-on-bad-exit=1"]

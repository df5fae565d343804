"""Slurm job steps: ``srun`` with the placement the manager chose."""
from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass

from ensemble.launchers.base import Launcher
from ensemble.providers.resources import Placement
from ensemble.spec import Step

#: Seconds ``srun --mpi=list`` may take (it reads the plugin directory; no controller is asked).
MPI_LIST_TIMEOUT = 30.0


def parse_mpi_list(text: str) -> frozenset[str]:
    """The plugin names in ``srun --mpi=list`` output: the indented lines (``pmix``, ``pmi2``,
    ``none``) and the specific versions (``specific pmix plugin versions available: pmix_v4``)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line[:1].isspace():
            names.update(line.split())
        elif "versions available:" in line:
            names.update(n.strip() for n in line.split(":", 1)[1].split(",") if n.strip())
    return frozenset(names)


def srun_mpi_plugins() -> frozenset[str]:
    """What this srun accepts as ``--mpi=``; empty when it cannot say (the name check alone decides)."""
    try:
        done = subprocess.run(["srun", "--mpi=list"], capture_output=True, text=True, timeout=MPI_LIST_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return parse_mpi_list(done.stdout + done.stderr) if done.returncode == 0 else frozenset()


@dataclass
class SrunLauncher(Launcher):
    """``srun --exact`` on exactly the nodes, task counts and CPUs the manager placed the step on.

    ``mpi`` is passed as ``--mpi=<mpi>`` (None: Slurm's ``MpiDefault``).  A step without GPUs
    gets ``--gres=none``: by default Slurm gives a step every GRES of the job on its nodes, so a
    GPU step started next to it would wait until it ends.  Slurm binds a GPU step's devices
    itself (``CUDA_VISIBLE_DEVICES`` in the task is Slurm's, not :meth:`Launcher.env`'s).  A step spread unevenly
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
        # A step that asks for no GRES gets all of the job's on its nodes, and GPU steps wait behind it.
        words += [f"--gpus-per-task={step.gpus_per_task}" if step.gpus_per_task else "--gres=none"]
        if len({s.tasks for s in shares}) > 1:
            words += ["-m", "arbitrary", "-w", ",".join(s.node for s in shares for _ in range(s.tasks))]
        else:
            words += ["-w", ",".join(s.node for s in shares)]
        if step.timeout:
            words += ["-t", str(math.ceil(step.timeout) + 1)]
        if self.mpi:
            words += [f"--mpi={self.mpi}"]
        return [*words, "--kill-on-bad-exit=1"]

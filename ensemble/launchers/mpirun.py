"""``mpirun``/``mpiexec`` for machines and allocations without srun (Open MPI and MPICH)."""
from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass

from ensemble.launchers.base import Launcher
from ensemble.providers.resources import Placement
from ensemble.spec import Step

OPEN_MPI, MPICH = "openmpi", "mpich"


@functools.cache
def mpi_flavour(command: str = "mpirun") -> str:
    """``openmpi`` or ``mpich``, from ``<command> --version`` (Open MPI says so; anything else is
    taken for MPICH/Hydra, whose flags Intel MPI and MVAPICH share)."""
    try:
        text = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return OPEN_MPI
    return OPEN_MPI if "Open MPI" in text or "OpenRTE" in text else MPICH


@dataclass
class MpirunLauncher(Launcher):
    """``mpirun -np <tasks>`` on the hosts and slots the manager placed the step on.

    Open MPI gets ``--host node:slots,...``, ``--bind-to none`` (several steps share a node; the
    manager, not mpirun, decides who uses which cores) and ``--oversubscribe`` (mpirun's idea of
    slots is not the manager's); as root also ``--allow-run-as-root``.  MPICH (Hydra) gets
    ``-hosts node:slots,...`` and ``-bind-to none``.  ``command_name`` is the launcher program
    (``mpirun``, ``mpiexec``, a full path); ``flavour`` skips asking it with ``--version``.
    """

    command_name: str = "mpirun"
    flavour: str | None = None
    name = "mpirun"

    def prefix(self, step: Step, placement: Placement) -> list[str]:
        flavour = self.flavour or mpi_flavour(self.command_name)
        hosts = ",".join(f"{s.node}:{s.tasks}" for s in placement.shares)
        if flavour == MPICH:
            return [self.command_name, "-n", str(step.tasks), "-hosts", hosts, "-bind-to", "none"]
        words = [self.command_name, "-np", str(step.tasks), "--host", hosts, "--bind-to", "none", "--oversubscribe"]
        if os.geteuid() == 0:
            words.append("--allow-run-as-root")
        return words

    def env(self, step: Step, placement: Placement) -> dict[str, str]:
        env = super().env(step, placement)
        if (self.flavour or mpi_flavour(self.command_name)) == OPEN_MPI and os.geteuid() == 0:
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        return env

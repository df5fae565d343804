"""Plain processes on this machine."""
from __future__ import annotations

from ensemble.launchers.base import Launcher
from ensemble.providers.resources import Placement
from ensemble.spec import Step


class LocalLauncher(Launcher):
    """Starts one process per step; it owns ``tasks * cores_per_task`` cores and its GPUs.

    The prefix is empty, so ``%%ensemble_launch%%`` in a batch script disappears.
    """

    name = "local"
    #: A local step is not part of the manager's MPI job: its PMI/PMIx variables would mislead it.
    drop_env_prefixes = ("PMI_", "PMIX_")

    def prefix(self, step: Step, placement: Placement) -> list[str]:
        return []

"""The launcher interface."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ensemble.providers.resources import VISIBLE_DEVICES_VARS, Placement
from ensemble.spec import Step


class Launcher(ABC):
    """Builds the command line and environment that start one step on its placement.

    A launcher is a leaf: it never writes state and never calls the scheduler.
    """

    name = "base"

    @abstractmethod
    def prefix(self, step: Step, placement: Placement) -> list[str]:
        """Words put in front of the application (``%%ensemble_launch%%`` in batch scripts)."""

    def command(self, step: Step, placement: Placement, argv: Sequence[str], batch_script: bool) -> list[str]:
        """The full command: a batch script launches its own parallel work, anything else is prefixed."""
        return list(argv) if batch_script else [*self.prefix(step, placement), *argv]

    def env(self, step: Step, placement: Placement) -> dict[str, str]:
        """Variables binding the step to its cores and GPUs.

        ``CUDA_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES`` and ``HIP_VISIBLE_DEVICES`` always name
        exactly the step's own device ids, as the node gives them; they are empty for a step with none.
        """
        devices = ",".join(placement.gpus)
        return {"OMP_NUM_THREADS": str(step.cores_per_task), **dict.fromkeys(VISIBLE_DEVICES_VARS, devices)}

"""Steps as Flux jobs: the jobspec carries the resources, so the command is the application's own."""
from __future__ import annotations

import math

from ensemble.flux.jobspec import DURATION_MARGIN
from ensemble.launchers.base import Launcher
from ensemble.providers.resources import VISIBLE_DEVICES_VARS, Placement
from ensemble.spec import Step


class FluxLauncher(Launcher):
    """Builds nothing around the application (:class:`~ensemble.flux.executor.FluxExecutor`
    submits it with a jobspec).  ``%%ensemble_launch%%`` in a batch script becomes::

        flux run [-N <nodes>] -n <tasks> -c <cores_per_task> [-g <gpus_per_task>] [-t <seconds>s]

    (the script runs as a one-core job and submits its parallel work to the same instance).
    """

    name = "flux"

    def prefix(self, step: Step, placement: Placement) -> list[str]:
        nodes = len(placement.shares)
        words = ["flux", "run", *(["-N", str(nodes)] if nodes > 1 else []), "-n", str(step.tasks),
                 "-c", str(step.cores_per_task)]
        if step.gpus_per_task:
            words += ["-g", str(step.gpus_per_task)]
        if step.timeout:
            words += ["-t", f"{math.ceil(step.timeout * 60) + DURATION_MARGIN:g}s"]
        return words

    def command(self, step: Step, placement: Placement, argv: list[str], batch_script: bool) -> list[str]:
        """The application as it is: Flux starts its tasks from the jobspec."""
        return list(argv)

    def env(self, step: Step, placement: Placement) -> dict[str, str]:
        """``OMP_NUM_THREADS``; a GPU step's device variables are left to Flux's shell (it binds
        the GPUs it chose); a step without GPUs sees none."""
        env = super().env(step, placement)
        if step.gpus_per_task:
            for var in VISIBLE_DEVICES_VARS:
                del env[var]
        return env

"""LSF job steps on CORAL systems: IBM's ``jsrun`` and LLNL's ``lrun`` wrapper of it.

Neither takes host names (jsrun would need an explicit resource file): the Job Step Manager
picks free hosts in the allocation itself and never gives two concurrent steps the same cores
or GPUs, so the manager's placement fixes the counts (tasks, cores, GPUs, tasks per node) and
JSM the hosts.  Neither has a per-step time limit option, so a step with a ``timeout`` runs
under coreutils ``timeout`` as a backstop a whole minute after it (see :func:`time_limit`): the
manager's own timeout acts first and records the attempt as timed out.  (Themis passes no
limit for lrun at all.)
"""
from __future__ import annotations

import math

from ensemble.launchers.base import Launcher
from ensemble.providers.resources import VISIBLE_DEVICES_VARS, Placement
from ensemble.spec import Step

#: Seconds between the backstop's SIGTERM and its SIGKILL.
KILL_AFTER = 30


def time_limit(step: Step) -> list[str]:
    """``timeout --kill-after=30 <minutes>m`` for a step with a timeout (whole minutes, rounded up,
    plus one, like srun's ``-t``); nothing for a step without one."""
    if not step.timeout:
        return []
    return ["timeout", f"--kill-after={KILL_AFTER}", f"{math.ceil(step.timeout) + 1}m"]


class _JsmLauncher(Launcher):
    """What jsrun and lrun share: the backstop and JSM's own GPU binding."""

    def env(self, step: Step, placement: Placement) -> dict[str, str]:
        """As :meth:`Launcher.env`, but a GPU step's device variables are JSM's (it binds the
        resource set's GPUs itself; the manager's ids only count them)."""
        env = super().env(step, placement)
        if step.gpus_per_task:
            for var in VISIBLE_DEVICES_VARS:
                del env[var]
        return env


class JsrunLauncher(_JsmLauncher):
    """One resource set per task::

        jsrun --nrs <tasks> --tasks_per_rs 1 --cpu_per_rs <cores_per_task> --gpu_per_rs <gpus_per_task>
              --rs_per_host <most tasks on one node> --bind rs [timeout ...] <app>

    ``--rs_per_host`` spreads the step over as many hosts as the manager placed it on;
    ``--bind rs`` keeps each task on its resource set's cores.
    """

    name = "jsrun"

    def prefix(self, step: Step, placement: Placement) -> list[str]:
        per_host = max(s.tasks for s in placement.shares)
        return ["jsrun", "--nrs", str(step.tasks), "--tasks_per_rs", "1", "--cpu_per_rs", str(step.cores_per_task),
                "--gpu_per_rs", str(step.gpus_per_task), "--rs_per_host", str(per_host), "--bind", "rs",
                *time_limit(step)]


class LrunLauncher(_JsmLauncher):
    """LLNL's lrun (options without spaces, as it requires)::

        lrun -N<nodes> (-T<tasks per node> | -p<tasks>) -c<cores_per_task> -g<gpus_per_task> [timeout ...] <app>

    ``-T`` when every node runs the same number of tasks, else ``-p`` with the total (lrun then
    spreads them over the ``-N`` nodes itself).
    """

    name = "lrun"

    def prefix(self, step: Step, placement: Placement) -> list[str]:
        shares = placement.shares
        counts = {s.tasks for s in shares}
        tasks = f"-T{shares[0].tasks}" if len(counts) == 1 else f"-p{step.tasks}"
        return ["lrun", f"-N{len(shares)}", tasks, f"-c{step.cores_per_task}", f"-g{step.gpus_per_task}",
                *time_limit(step)]

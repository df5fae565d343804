"""``ensemble dryrun --show``: per run, the rendered input decks as diffs against their templates
and the exact command line of every step for a chosen launcher, on a target allocation that
every step is checked to fit."""
from __future__ import annotations

import difflib
import os
import shlex
from dataclasses import dataclass
from typing import Any

from ensemble.alloc.routing import RoutedLauncher
from ensemble.errors import SpecError
from ensemble.launchers import (
    FluxLauncher,
    JsrunLauncher,
    Launcher,
    LocalLauncher,
    LrunLauncher,
    MpirunLauncher,
    SrunLauncher,
)
from ensemble.prep.dryrun import PreparedRun
from ensemble.providers.resources import Node, Pool
from ensemble.spec import Step
from ensemble.spec.config import EnsembleConfig

LAUNCHERS = {"local": LocalLauncher, "srun": SrunLauncher, "mpirun": MpirunLauncher, "jsrun": JsrunLauncher,
             "lrun": LrunLauncher, "flux": FluxLauncher, "worker": lambda: RoutedLauncher(SrunLauncher())}


@dataclass(frozen=True)
class Target:
    """The allocation steps are shown (and checked) for: nodes x cores x GPUs."""

    launcher: str
    nodes: int
    cores_per_node: int
    gpus_per_node: int

    def pool(self) -> Pool:
        names = ["localhost"] if self.launcher == "local" else [f"node{k + 1}" for k in range(self.nodes)]
        return Pool(tuple(Node(name, tuple(range(self.cores_per_node)), tuple(str(g) for g in range(self.gpus_per_node)))
                          for name in names))

    def describe(self) -> str:
        return (f"launcher {self.launcher} on {self.nodes} node(s) x {self.cores_per_node} cores x "
                f"{self.gpus_per_node} gpus")


def make_launcher(name: str) -> Launcher:
    if name not in LAUNCHERS:
        raise SpecError(f"launcher: expected one of {', '.join(LAUNCHERS)}, got {name!r}")
    return LAUNCHERS[name]()


def deck_diffs(config: EnsembleConfig, prepared: PreparedRun) -> list[str]:
    """Unified diffs (no context) of each parsed input deck against its template."""
    out: list[str] = []
    for template, rendered in zip(config.run_parse, prepared.parsed):
        with open(template, encoding="utf-8", errors="replace") as a, open(rendered, encoding="utf-8",
                                                                             errors="replace") as b:
            out += [line.rstrip("\n") for line in difflib.unified_diff(a.readlines(), b.readlines(), template,
                                                                      rendered, n=0)]
    return out


def step_lines(steps: list[dict[str, Any]], prepared: PreparedRun, launcher: Launcher,
               pool: Pool) -> tuple[list[str], int]:
    """One line per step: its command line on the target, or why it can never fit; and how many do not fit."""
    out, misfits, scripts = [], 0, iter(prepared.scripts)
    for index, data in enumerate(steps):
        step = Step.from_dict(data)
        if not pool.can_ever_fit(step.tasks, step.cores_per_task, step.gpus_per_task):
            misfits += 1
            out.append(f"  step {index}: DOES NOT FIT: {step.tasks} tasks x {step.cores_per_task} cores x "
                       f"{step.gpus_per_task} gpus on {pool.total_cores} cores, {pool.total_gpus} gpus in "
                       f"{len(pool.nodes)} node(s)")
            continue
        placement = pool.allocate(step.tasks, step.cores_per_task, step.gpus_per_task)
        argv = list(step.args)
        if step.batch_script:
            argv[0] = next(scripts)
            launch = shlex.join(launcher.prefix(step, placement))
            out.append(f"  step {index}: {shlex.join(launcher.command(step, placement, argv, True))}"
                       f"  (%%ensemble_launch%%: {launch or 'nothing'})")
        else:
            out.append(f"  step {index}: {shlex.join(launcher.command(step, placement, argv, False))}")
        pool.release(placement)
    return out, misfits


def show(config: EnsembleConfig, runs: list[dict[str, Any]], prepared: list[PreparedRun],
         target: Target) -> tuple[list[str], int]:
    """The lines ``dryrun --show`` prints, and how many steps do not fit the target."""
    launcher, pool = make_launcher(target.launcher), target.pool()
    lines, misfits = [f"target: {target.describe()}"], 0
    for run, made in zip(runs, prepared):
        lines.append(f"run {made.run_id}: {os.path.relpath(made.run_dir)}")
        lines += [f"  {line}" for line in deck_diffs(config, made)]
        steps, bad = step_lines(run["steps"], made, launcher, pool)
        lines += steps
        misfits += bad
    return lines, misfits

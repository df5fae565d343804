"""Dry runs: prepare run directories and call ``prep_run`` without launching anything."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ensemble.prep.hooks import call_hook
from ensemble.prep.rundir import RunDirPreparer, step_cwd
from ensemble.spec.config import EnsembleConfig


@dataclass(frozen=True)
class PreparedRun:
    """What a dry run made for one run: absolute paths of the files, by kind, and what
    ``prep_run`` returned."""

    run_id: int
    run_dir: str
    parsed: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    linked: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    prep_run: Any = None

    def describe(self) -> str:
        """One line: the run, its directory, and the names made there."""
        kinds = (("parsed", self.parsed), ("copied", self.copied), ("linked", self.linked),
                 ("script", self.scripts))
        made = "; ".join(f"{kind} {', '.join(os.path.relpath(p, self.run_dir) for p in paths)}"
                         for kind, paths in kinds if paths)
        return f"{self.run_id}\t{self.run_dir}" + (f"\t{made}" if made else "")


def dry_run(config: EnsembleConfig, interface: Any, setup_dir: Path, runs: Iterable[dict[str, Any]],
            verbosity: int = 0) -> list[PreparedRun]:
    """Prepare each run's directory and batch scripts serially and call ``prep_run``."""
    preparer, out = RunDirPreparer(config), []
    names = {kind: [os.path.basename(p) for p in getattr(config, kind)] for kind in ("run_parse", "run_copy",
                                                                                   "run_symlink")}
    for run in runs:
        run_dir = run["run_dir"]
        preparer.prepare(run["id"], run_dir, run["sample"])
        scripts = [preparer.render_script(step["args"][0], step_cwd(run_dir, step["cwd"]), run["id"], run_dir,
                                          run["sample"], "")
                   for step in run["steps"] if step["batch_script"]]
        value = call_hook(interface, "prep_run", setup_dir=str(setup_dir), run_id=run["id"], run_dir=run_dir,
                          sample=run["sample"])
        prepared = PreparedRun(run["id"], run_dir, *([os.path.join(run_dir, n) for n in names[kind]]
                                                    for kind in ("run_parse", "run_copy", "run_symlink")),
                               scripts, value)
        if verbosity > 0:
            print(f"dry run {run['id']}: prepared {run_dir}")
        out.append(prepared)
    return out

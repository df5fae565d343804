"""Run-directory preparation: copies, symlinks, parsed input decks, batch scripts."""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ensemble.spec.config import EnsembleConfig
from ensemble.spec.templating import Template


class RunDirPreparer:
    """Prepares run directories for one ensemble; templates are read once."""

    def __init__(self, config: EnsembleConfig) -> None:
        self.config = config
        self._templates: dict[str, Template] = {}

    def template(self, path: str) -> Template:
        template = self._templates.get(path)
        if template is None:
            template = Template.load(path, self.config.template_engine, self.config.strict_templates)
            self._templates[path] = template
        return template

    @staticmethod
    def values(run_id: int, run_dir: str, sample: Mapping[str, Any], launch: str = "") -> dict[str, Any]:
        """Token values for one run: its sample plus the reserved tokens."""
        return {**sample, "run_id": run_id, "run_dir": run_dir, "ensemble_launch": launch, "themis_launch": launch}

    def prepare(self, run_id: int, run_dir: str, sample: Mapping[str, Any], exists: bool = False) -> None:
        """Create ``run_dir`` (unless it ``exists``) and fill it with copies, symlinks and parsed files."""
        if not exists:
            _make_dir(run_dir)
        if not (self.config.run_copy or self.config.run_symlink or self.config.run_parse):
            return
        target = Path(run_dir)
        for src in self.config.run_copy:
            dest = target / os.path.basename(src)
            if os.path.isdir(src):
                shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest)
        for src in self.config.run_symlink:
            dest = target / os.path.basename(src)
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            dest.symlink_to(src)
        if self.config.run_parse:
            values = self.values(run_id, run_dir, sample)
            for src in self.config.run_parse:
                self.template(src).render_to(target / os.path.basename(src), values)

    def render_script(self, script: str, cwd: str, run_id: int, run_dir: str, sample: Mapping[str, Any],
                      launch: str) -> str:
        """Parse a batch script into ``cwd``; return the path of the copy."""
        dest = Path(cwd) / os.path.basename(script)
        Path(cwd).mkdir(parents=True, exist_ok=True)
        self.template(script).render_to(dest, self.values(run_id, run_dir, sample, launch))
        dest.chmod(dest.stat().st_mode | 0o700)
        return str(dest)


def _make_dir(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)``, in one system call when the parent exists (the usual case)."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        if not os.path.isdir(path):
            raise


def step_cwd(run_dir: str, cwd: str) -> str:
    """A step's working directory: ``cwd`` relative to the run directory unless absolute."""
    return os.path.normpath(os.path.join(run_dir, cwd))

"""The :class:`~ensemble.Ensemble` methods that prepare runs and call the interface's hooks by hand."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ensemble.errors import SpecTypeError
from ensemble.prep.dryrun import PreparedRun, dry_run
from ensemble.prep.hooks import call_hook, load_interface
from ensemble.spec.arguments import run_id_arg, run_ids_arg
from ensemble.spec.config import EnsembleConfig
from ensemble.store import Store


class Preparation:
    """Mixed into :class:`~ensemble.Ensemble` (which provides ``store``, ``config``, ``setup_dir``,
    ``filter_by_status`` and ``_check_existing``)."""

    store: Store
    config: EnsembleConfig
    setup_dir: Path

    def _interface(self):
        return load_interface(self.config.app_interface) if self.config.app_interface else None

    def dry_run(self, *run_ids: int, verbosity: int = 0) -> list[PreparedRun]:
        """Prepare run directories (copies, symlinks, parsed files, batch scripts) and call ``prep_run``.

        Serial and launch-free, so safe on a login node.  Returns what was prepared, per run.
        """
        ids = run_ids_arg(run_ids) or self.filter_by_status()
        self._check_existing(ids)
        if not isinstance(verbosity, int):
            raise SpecTypeError(f"verbosity: expected an integer, got {verbosity!r}")
        return dry_run(self.config, self._interface(), self.setup_dir, self.store.runs(ids), verbosity)

    def call_prep_ensemble(self) -> Any:
        """Call the interface's ``prep_ensemble`` (if defined); return its value."""
        return call_hook(self._interface(), "prep_ensemble", setup_dir=str(self.setup_dir), cwd=self.config.root_dir)

    def call_post_ensemble(self) -> Any:
        """Call the interface's ``post_ensemble`` (if defined); return its value."""
        return call_hook(self._interface(), "post_ensemble", setup_dir=str(self.setup_dir), cwd=self.config.root_dir)

    def call_post_run(self, run_id: int) -> Any:
        """Call ``post_run`` for one run in its directory; return its value (None if undefined)."""
        run_id = run_id_arg(run_id)
        self._check_existing([run_id], "run_id")
        run = self.store.runs([run_id])[0]
        Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
        return call_hook(self._interface(), "post_run", setup_dir=str(self.setup_dir), run_id=run["id"],
                         run_dir=run["run_dir"], sample=run["sample"])

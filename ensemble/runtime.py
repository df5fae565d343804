"""The runtime API: what a running application (or a hook) may call.

Everything here works from any node that shares the setup directory's file
system and needs no server: values come from environment variables the manager
sets (``ENSEMBLE_SETUP_DIR``, ``ENSEMBLE_RUN_ID``, ``ENSEMBLE_RUN_DIR``,
``ENSEMBLE_SAMPLE``) and changes travel as atomic JSON files through the setup
directory's inbox, which the manager applies within a second.  Outside a
running manager (``dry_run``, ``call_post_run``) changes apply directly.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ensemble.prep.hooks import ENV_MANAGER, ENV_RUN_DIR, ENV_RUN_ID, ENV_SAMPLE, ENV_SETUP_DIR
from ensemble.prep.rundir import RunDirPreparer
from ensemble.setup import control
from ensemble.setup.intake import RunIntake
from ensemble.setup.setupdir import CONFIG_FILE
from ensemble.spec import to_json
from ensemble.spec.config import EnsembleConfig
from ensemble.spec.templating import Template


class RuntimeContextError(RuntimeError):
    """Called outside an ensemble run (the environment lacks the run's variables)."""


def _env(name: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise RuntimeContextError(f"ensemble.runtime: {name} is not set; call this from a run of an ensemble")
    return value


def setup_dir() -> Path:
    """The ensemble's setup directory."""
    return Path(_env(ENV_SETUP_DIR))


def run_id() -> int:
    """The id of the run this process belongs to."""
    return int(_env(ENV_RUN_ID))


def run_dir() -> Path:
    """The run's directory."""
    return Path(_env(ENV_RUN_DIR))


def sample() -> dict[str, Any]:
    """The run's sample."""
    return json.loads(_env(ENV_SAMPLE))


def _config() -> EnsembleConfig:
    return EnsembleConfig.from_dict(json.loads((setup_dir() / CONFIG_FILE).read_text(encoding="utf-8")))


def _submit(command: dict[str, Any]) -> None:
    if os.environ.get(ENV_MANAGER):
        control.post(setup_dir(), command)
        return
    from ensemble.store import Store

    store = Store.open(setup_dir())
    try:
        control.submit(setup_dir(), store, _config(), command)
    finally:
        store.close()


def set_result(result: Any) -> None:
    """Set this run's result (any JSON-serialisable value)."""
    _submit({"op": "set_result", "run_id": run_id(), "result": json.loads(to_json(result, "result"))})


def add_runs(runs: Iterable[Any]) -> None:
    """Add runs (``Run`` / ``CompositeRun``) to the ensemble; the manager executes them."""
    if os.environ.get(ENV_MANAGER):
        intake = RunIntake(_config())
        control.post_runs(setup_dir(), intake, intake.iterable(runs), 1)
        return
    from ensemble.store import Store

    store = Store.open(setup_dir())
    try:
        control.add_runs(setup_dir(), store, _config(), runs)
    finally:
        store.close()


def stop_ensemble(reason: str | None = None) -> None:
    """Ask the manager to launch nothing more; runs in flight finish, then it exits."""
    _submit({"op": "stop", "reason": reason or f"stop_ensemble() from run {os.environ.get(ENV_RUN_ID)}"})


def parse_file(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Render the text file ``src`` into ``dst`` with this run's sample (``%%name%%`` tokens)."""
    config = _config()
    template = Template.load(src, config.template_engine, config.strict_templates)
    template.render_to(dst, RunDirPreparer.values(run_id(), str(run_dir()), sample()))

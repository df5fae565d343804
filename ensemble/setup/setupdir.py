"""The setup directory: built complete under a temporary name and renamed into place, replaced
only once the new one is valid, cleared only while no manager runs."""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError, EnsembleExists, SpecTypeError
from ensemble.prep.hooks import load_interface
from ensemble.setup import provenance
from ensemble.setup.intake import RunIntake, insert_runs
from ensemble.spec import check_text
from ensemble.spec.config import EnsembleConfig, build_config
from ensemble.store import DB_NAME, Store
from ensemble.store.lease import live_leases

DEFAULT_SETUP_DIR = "./.ensemble_setup"
LOG_DIR = "logs"
INBOX_DIR = "inbox"
#: The configuration as JSON, for applications (:mod:`ensemble.runtime`) that read it without the database.
CONFIG_FILE = "config.json"
#: ``create`` options that become paths or command lines.
TEXT_OPTIONS = ("application", "run_parse", "run_copy", "run_symlink", "run_dir_names", "app_interface", "use_flux",
                "result_file")


def setup_path(setup_dir: str | os.PathLike) -> Path:
    """The absolute setup directory named by ``setup_dir`` (checked)."""
    if not isinstance(setup_dir, (str, os.PathLike)) or not os.fspath(setup_dir):
        raise SpecTypeError(f"setup_dir: expected a directory path, got {setup_dir!r}")
    return Path(os.path.abspath(check_text("setup_dir", str(os.fspath(setup_dir)))))


def check_option_text(options: dict[str, Any]) -> None:
    """Refuse NUL bytes in the ``create`` options that become paths or command lines."""
    for name in TEXT_OPTIONS:
        value = options[name]
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)):
                check_text(name, str(os.fspath(item)))


def exists(setup: Path) -> bool:
    """Whether ``setup`` holds an ensemble."""
    return (setup / DB_NAME).is_file()


def build(options: dict[str, Any], setup: Path, overwrite: bool) -> Path:
    """Validate ``create`` options, then write the setup directory atomically; return it.

    The runs are validated and inserted a batch at a time into a temporary directory, which
    any error removes; the finished directory is renamed into place."""
    if exists(setup) and not overwrite:
        raise EnsembleExists(f"setup_dir: an ensemble already exists in {str(setup)!r} "
                             "(use create_overwrite or create_resume; ensemble create --overwrite)")
    if setup.exists() and not exists(setup) and (not setup.is_dir() or any(setup.iterdir())):
        raise EnsembleError(f"setup_dir: {str(setup)!r} exists and is not an ensemble setup directory")
    runs, progress = options.pop("runs"), options.pop("progress")
    check_option_text(options)
    config = build_config(Path.cwd(), **options)
    if config.app_interface:
        load_interface(config.app_interface)
    intake = RunIntake(config, progress)
    runs = intake.iterable(runs)
    if overwrite and exists(setup):
        refuse_while_running(setup, "overwrite")
    first_missing = next((p for p in reversed([setup.parent, *setup.parent.parents]) if not p.exists()), None)
    tmp = setup.parent / f".{setup.name}.creating-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        write_setup(tmp, config, intake, runs)
        install(tmp, setup)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if first_missing is not None:
            shutil.rmtree(first_missing, ignore_errors=True)
        raise
    return setup


def clear(setup: Path) -> None:
    """Remove the setup directory unless a manager executes it."""
    if not exists(setup):
        return
    refuse_while_running(setup, "clear")
    shutil.rmtree(setup)


def refuse_while_running(setup: Path, action: str) -> None:
    store = Store.open(setup)
    try:
        live = live_leases(store)
    finally:
        store.close()
    if live:
        raise EnsembleError(f"setup_dir: cannot {action} {str(setup)!r} while manager pid {live[0]['pid']} "
                            f"on {live[0]['host']} executes it")


def write_setup(directory: Path, config: EnsembleConfig, intake: RunIntake, runs: Iterable[Any]) -> None:
    """Fill a new setup directory: database with the runs (validated and inserted batch by batch),
    config copy, logs/ and inbox/."""
    store = Store.create(directory, {"config": config.to_dict(), "created": time.time(),
                                     "provenance": provenance.collect(Path(config.root_dir))})
    try:
        with store.transaction():
            count = insert_runs(store, intake, runs, 1)
            store.add_events([(None, "created", {"runs": count})])
    finally:
        store.close()
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    (directory / LOG_DIR).mkdir()
    (directory / INBOX_DIR).mkdir()


def install(tmp: Path, setup: Path) -> None:
    """Move a finished setup directory into place; an existing one is swapped out, then removed."""
    if not exists(setup):
        if setup.is_dir():
            setup.rmdir()
        os.rename(tmp, setup)
        return
    old = setup.parent / f".{setup.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(setup, old)
    try:
        os.rename(tmp, setup)
    except BaseException:
        os.rename(old, setup)
        raise
    shutil.rmtree(old, ignore_errors=True)

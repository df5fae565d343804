"""The application interface: a user Python module with optional hooks.

Hooks: ``prep_ensemble``, ``post_ensemble``, ``prep_run``, ``post_run``.  A
hook receives, by name, whichever of these parameters it declares:
``run_id``, ``sample``, ``run_dir``, ``setup_dir``.  During a call the
environment carries the same values, so :mod:`ensemble.runtime` works inside
hooks too; run hooks are called with the run directory as working directory.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import inspect
import json
import os
import shutil
import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from ensemble.errors import HookError

HOOKS = ("prep_ensemble", "post_ensemble", "prep_run", "post_run")
ENV_SETUP_DIR = "ENSEMBLE_SETUP_DIR"
ENV_RUN_ID = "ENSEMBLE_RUN_ID"
ENV_RUN_DIR = "ENSEMBLE_RUN_DIR"
ENV_SAMPLE = "ENSEMBLE_SAMPLE"
ENV_MANAGER = "ENSEMBLE_MANAGER"
#: The interpreter the manager runs in (``"$ENSEMBLE_PYTHON" -c "from ensemble import runtime; ..."``
#: works in a step even when its own ``python3`` is another one).
ENV_PYTHON = "ENSEMBLE_PYTHON"
#: The absolute path of the ``ensemble`` command of that installation (when it has one).
ENV_BIN = "ENSEMBLE_BIN"


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles the interface from its source every time: no stale or stray ``__pycache__``."""

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


def load_interface(path: str | Path) -> ModuleType:
    """Import the interface module from a file; raise HookError with its traceback."""
    path = Path(path)
    name = f"ensemble_app_interface_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path, loader=_SourceLoader(name, str(path)))
    if spec is None or spec.loader is None:
        raise HookError(f"app_interface: {str(path)!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        raise HookError(f"app_interface: importing {str(path)!r} failed:\n{traceback.format_exc()}") from None
    for hook in HOOKS:
        if hasattr(module, hook) and not callable(getattr(module, hook)):
            raise HookError(f"app_interface: {hook} in {str(path)!r} is not callable")
    return module


def run_env(setup_dir: str, run_id: int | None = None, run_dir: str | None = None,
            sample: Mapping[str, Any] | None = None, sample_json: str | None = None) -> dict[str, str]:
    """Environment variables describing a run to the application (``sample_json``: the sample's
    JSON text where it is at hand, used as it is)."""
    env = {ENV_SETUP_DIR: setup_dir}
    if run_id is not None:
        env[ENV_RUN_ID] = str(run_id)
    if run_dir is not None:
        env[ENV_RUN_DIR] = run_dir
    if sample_json is not None:
        env[ENV_SAMPLE] = sample_json
    elif sample is not None:
        env[ENV_SAMPLE] = json.dumps(sample)
    return env


def installation_env() -> dict[str, str]:
    """``ENSEMBLE_PYTHON`` and ``ENSEMBLE_BIN``: this installation, for every step's environment."""
    env = {ENV_PYTHON: sys.executable}
    beside = Path(sys.executable).with_name("ensemble")
    command = str(beside) if os.access(beside, os.X_OK) else shutil.which("ensemble")
    if command:
        env[ENV_BIN] = os.path.abspath(command)
    return env


@contextmanager
def hook_context(env: Mapping[str, str], cwd: str | None) -> Iterator[None]:
    """Temporarily set environment variables and the working directory."""
    saved = {key: os.environ.get(key) for key in (ENV_SETUP_DIR, ENV_RUN_ID, ENV_RUN_DIR, ENV_SAMPLE)}
    old_cwd = os.getcwd()
    for key in saved:
        os.environ.pop(key, None)
    os.environ.update(env)
    try:
        if cwd is not None:
            os.chdir(cwd)
        yield
    finally:
        os.chdir(old_cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def call_hook(module: ModuleType | None, hook: str, *, setup_dir: str, run_id: int | None = None,
              run_dir: str | None = None, sample: Mapping[str, Any] | None = None, cwd: str | None = None) -> Any:
    """Call ``hook`` if the module defines it; return its value (None if absent).

    It runs in ``run_dir`` for run hooks, else in ``cwd`` (else where this process is).
    """
    func = getattr(module, hook, None) if module is not None else None
    if func is None:
        return None
    offered = {"run_id": run_id, "sample": sample, "run_dir": run_dir, "setup_dir": setup_dir}
    params = inspect.signature(func).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in offered.items() if takes_all or k in params}
    with hook_context(run_env(setup_dir, run_id, run_dir, sample), run_dir or cwd):
        sys.stdout.flush()
        return func(**kwargs)

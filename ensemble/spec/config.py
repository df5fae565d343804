"""Ensemble-wide options: validation of ``Ensemble.create`` arguments.

Plain data; the only I/O is resolving glob patterns and application paths
against the directory ``create`` was called from.
"""
from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ensemble.errors import SpecError, SpecTypeError
from ensemble.spec.templating import check_engine

DEFAULT_RUN_DIR_NAMES = "runs/{run_id}"
#: The file in a run directory whose JSON becomes the run's result when its last step succeeds.
DEFAULT_RESULT_FILE = "ensemble_result.json"


@dataclass(frozen=True)
class EnsembleConfig:
    """Validated, JSON-serialisable ensemble options (stored in the database)."""

    root_dir: str
    application: str | None = None
    run_parse: list[str] = field(default_factory=list)
    run_copy: list[str] = field(default_factory=list)
    run_symlink: list[str] = field(default_factory=list)
    run_dir_names: str = DEFAULT_RUN_DIR_NAMES
    app_interface: str | None = None
    max_restarts: int | None = 0
    max_failed_runs: int | None = None
    app_is_batch_script: bool = True
    use_flux: bool | str = False
    abort_on: list[int] = field(default_factory=list)
    template_engine: str = "tokens"
    strict_templates: bool = True
    result_file: str | None = DEFAULT_RESULT_FILE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EnsembleConfig":
        return cls(**data)


def _optional_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecTypeError(f"{name}: expected a non-negative integer or None, got {value!r}")
    if value < 0:
        raise SpecError(f"{name}: must be >= 0 or None, got {value!r}")
    return value


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecTypeError(f"{name}: expected True or False, got {value!r}")
    return value


def _patterns(name: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    if not isinstance(value, Iterable):
        raise SpecTypeError(f"{name}: expected a path, a glob pattern or a list of them, got {value!r}")
    items = list(value)
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise SpecTypeError(f"{name}: expected paths or glob patterns, got item {item!r}")
        if not os.fspath(item):
            raise SpecError(f"{name}: paths and glob patterns must be non-empty, got {item!r}")
    return [os.fspath(i) for i in items]


def expand_patterns(name: str, value: Any, root: Path, files_only: bool = False) -> list[str]:
    """Absolute paths matched by the glob patterns; each pattern must match something."""
    paths: list[str] = []
    for pattern in _patterns(name, value):
        full = pattern if os.path.isabs(pattern) else str(root / pattern)
        matches = sorted(glob.glob(full)) or ([full] if os.path.lexists(full) else [])
        if not matches:
            raise SpecError(f"{name}: {pattern!r} matches no file (relative to {root})")
        for match in matches:
            if files_only and not os.path.isfile(match):
                raise SpecError(f"{name}: {match!r} is not a regular file and cannot be parsed")
            paths.append(os.path.abspath(match))
    return paths


def _abort_on(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        value = [value]
    codes = []
    for code in value:
        if isinstance(code, bool) or not isinstance(code, int):
            raise SpecTypeError(f"abort_on: expected exit codes (integers 1-255), got {code!r}")
        if not 1 <= code <= 255:
            raise SpecError(f"abort_on: exit codes are 1-255, got {code!r}")
        codes.append(code)
    return sorted(set(codes))


def _check_unique_names(lists: dict[str, list[str]]) -> None:
    seen: dict[str, str] = {}
    for name, paths in lists.items():
        for path in paths:
            base = os.path.basename(path)
            if base in seen:
                raise SpecError(f"{name}: {path!r} would land in the run directory as {base!r}, "
                                f"which {seen[base]} already provides")
            seen[base] = name


def resolve_executable(path: str, root: Path) -> str | None:
    """Absolute path of an application: a file relative to ``root``, else a command on PATH, else None."""
    full = path if os.path.isabs(path) else str(root / path)
    if os.path.exists(full):
        return os.path.abspath(full)
    return None if os.sep in path else shutil.which(path)


def build_config(
    root: Path,
    application: Any,
    run_parse: Any,
    run_copy: Any,
    run_symlink: Any,
    run_dir_names: Any,
    app_interface: Any,
    max_restarts: Any,
    max_failed_runs: Any,
    app_is_batch_script: Any,
    use_flux: Any,
    abort_on: Any,
    template_engine: Any,
    strict_templates: Any,
    result_file: Any = DEFAULT_RESULT_FILE,
) -> EnsembleConfig:
    """Validate every ``create`` option; raise SpecError/SpecTypeError naming the field."""
    if application is not None and not isinstance(application, (str, os.PathLike)):
        raise SpecTypeError(f"application: expected a path or command name, got {application!r}")
    if run_dir_names is None:
        run_dir_names = DEFAULT_RUN_DIR_NAMES
    if not isinstance(run_dir_names, str):
        raise SpecTypeError(f"run_dir_names: expected a format string such as 'runs/{{run_id}}', got {run_dir_names!r}")
    if not run_dir_names.strip():
        raise SpecError(f"run_dir_names: must be a non-empty format string such as 'runs/{{run_id}}', "
                        f"got {run_dir_names!r}")
    interface = None
    if app_interface is not None:
        if not isinstance(app_interface, (str, os.PathLike)):
            raise SpecTypeError(f"app_interface: expected a path to a Python file, got {app_interface!r}")
        interface = os.path.abspath(root / os.fspath(app_interface))
        if not os.path.isfile(interface):
            raise SpecError(f"app_interface: {os.fspath(app_interface)!r} is not a file")
    if not isinstance(use_flux, (bool, str)):
        raise SpecTypeError(f"use_flux: expected True, False or a path to Flux, got {use_flux!r}")
    if not isinstance(template_engine, str):
        raise SpecTypeError(f"template_engine: expected 'tokens' or 'jinja', got {template_engine!r}")
    parse = expand_patterns("run_parse", run_parse, root, files_only=True)
    copy = expand_patterns("run_copy", run_copy, root)
    symlink = expand_patterns("run_symlink", run_symlink, root)
    _check_unique_names({"run_parse": parse, "run_copy": copy, "run_symlink": symlink})
    return EnsembleConfig(
        root_dir=str(root),
        application=None if application is None else os.fspath(application),
        run_parse=parse,
        run_copy=copy,
        run_symlink=symlink,
        run_dir_names=run_dir_names,
        app_interface=interface,
        max_restarts=_optional_count("max_restarts", max_restarts),
        max_failed_runs=_optional_count("max_failed_runs", max_failed_runs),
        app_is_batch_script=_bool("app_is_batch_script", app_is_batch_script),
        use_flux=use_flux,
        abort_on=_abort_on(abort_on),
        template_engine=check_engine(template_engine),
        strict_templates=_bool("strict_templates", strict_templates),
        result_file=_result_file(result_file),
    )


def _result_file(value: Any) -> str | None:
    """A file name relative to the run directory (None: no result file is read)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecTypeError(f"result_file: expected a file name relative to the run directory or None, got {value!r}")
    parts = Path(value).parts
    if not value.strip() or "\0" in value or Path(value).is_absolute() or ".." in parts:
        raise SpecError(f"result_file: expected a file name inside the run directory, got {value!r}")
    return value

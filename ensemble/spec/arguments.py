"""Checks of the Python API's arguments (run ids, paths) and how ids are shown in messages."""
from __future__ import annotations

import inspect
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ensemble.errors import SpecError, SpecTypeError
from ensemble.spec import check_text

#: Most missing run ids an error message lists.
MAX_LISTED_IDS = 10


def format_ids(ids: Sequence[int]) -> str:
    """Sorted ids as ranges, ``1-3, 7``; at most MAX_LISTED_IDS ranges, then how many more ids."""
    groups: list[list[int]] = []
    for run_id in sorted(set(ids)):
        if groups and run_id == groups[-1][1] + 1:
            groups[-1][1] = run_id
        else:
            groups.append([run_id, run_id])
    text = [str(a) if a == b else f"{a}-{b}" for a, b in groups[:MAX_LISTED_IDS]]
    rest = sum(b - a + 1 for a, b in groups[MAX_LISTED_IDS:])
    return ", ".join(text) + (f" and {rest} more" if rest else "")


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def run_ids_arg(run_ids: Any, what: str = "run_ids") -> list[int]:
    if is_int(run_ids):
        run_ids = [run_ids]
    if isinstance(run_ids, (str, bytes)) or not isinstance(run_ids, Iterable):
        raise SpecTypeError(f"{what}: expected an iterable of integer run ids, got {run_ids!r}")
    ids = list(run_ids)
    for run_id in ids:
        if not is_int(run_id):
            raise SpecTypeError(f"{what}: expected integer run ids, got {run_id!r}")
    return [int(i) for i in ids]


def run_id_arg(run_id: Any) -> int:
    if not is_int(run_id):
        raise SpecTypeError(f"run_id: expected one integer run id, got {run_id!r}")
    return int(run_id)


def optional_path(name: str, value: Any) -> str | None:
    """The absolute form of an optional path argument."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise SpecTypeError(f"{name}: expected a file path or None, got {value!r}")
    return os.path.abspath(check_text(name, str(os.fspath(value))))


def count_arg(name: str, value: Any, minimum: int) -> int:
    """An integer option ``>= minimum`` (never a bool); the error names the option and the value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecTypeError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{name}: must be >= {minimum}, got {value!r}")
    return value


def split_create_args(create: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Bind arguments as ``create`` (:meth:`Ensemble.create`) takes them; return (options, setup_dir)."""
    try:
        bound = inspect.signature(create).bind(*args, **kwargs)
    except TypeError as exc:
        raise SpecTypeError(f"create: {exc}") from None
    bound.apply_defaults()
    options = dict(bound.arguments)
    return options, options.pop("setup_dir")

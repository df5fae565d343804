"""Argument checks shared by the parameter-study builders.

Every error names the function and the argument and shows the offending value,
e.g. ``grid: x: expected a list of values, got 5``.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from ensemble.errors import SpecError, SpecTypeError

Sample = dict[str, Any]


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (``np.float64(0.5)`` -> ``0.5``); anything else unchanged."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _is_list_like(value: Any) -> bool:
    if isinstance(value, (str, bytes, bytearray, Mapping, set, frozenset)):
        return False
    return isinstance(value, (list, tuple, range)) or getattr(value, "ndim", None) == 1


def value_list(where: str, values: Any) -> list[Any]:
    """The non-empty list of values of one parameter; numpy arrays and scalars become Python values."""
    if not _is_list_like(values):
        hint = " (a set has no order; pass sorted(...))" if isinstance(values, (set, frozenset)) else ""
        raise SpecTypeError(f"{where}: expected a list of values{hint}, got {values!r}")
    items = [plain(value) for value in values]
    if not items:
        raise SpecError(f"{where}: must hold at least one value, got {values!r}")
    return items


def check_name(where: str, name: Any) -> str:
    """A parameter name: a non-empty string."""
    if not isinstance(name, str):
        raise SpecTypeError(f"{where}: a parameter name must be a string, got {name!r}")
    if not name:
        raise SpecError(f"{where}: a parameter name must not be empty")
    return name


def sample(where: str, item: Any) -> Sample:
    """A shallow copy of one sample, a mapping with string labels."""
    if not isinstance(item, Mapping):
        raise SpecTypeError(f"{where}: expected a sample (a dict of labels to values), got {item!r}")
    for key in item:
        check_name(where, key)
    return dict(item)


def space(where: str, items: Any) -> list[Sample]:
    """A list of samples from any iterable of mappings (a list, a tuple, a generator)."""
    if isinstance(items, (str, bytes, bytearray, Mapping)) or not isinstance(items, Iterable):
        raise SpecTypeError(f"{where}: expected a list of samples (dicts), got {items!r}")
    if hasattr(items, "columns") and hasattr(items, "to_dict"):
        raise SpecTypeError(f"{where}: expected a list of samples (dicts), got a {type(items).__name__}; "
                            "pass frame.to_dict('records')")
    return [sample(f"{where}[{i}]", item) for i, item in enumerate(items)]


def merge(where: str, parts: Iterable[Sample]) -> Sample:
    """One sample made of several with different labels; a label in two of them is an error."""
    merged: Sample = {}
    for part in parts:
        shared = sorted(set(merged).intersection(part))
        if shared:
            raise SpecError(f"{where}: label {shared[0]!r} is in two of the combined spaces (values "
                            f"{merged[shared[0]]!r} and {part[shared[0]]!r}); give each parameter in one of them only")
        merged.update(part)
    return merged


def count(where: str, n: Any) -> int:
    """A number of samples: an integer >= 1."""
    n = plain(n)
    if isinstance(n, bool) or not isinstance(n, int):
        raise SpecTypeError(f"{where}: expected an integer number of samples, got {n!r}")
    if n < 1:
        raise SpecError(f"{where}: must be >= 1, got {n!r}")
    return n


def seed(where: str, value: Any) -> int | None:
    """A random seed: None (fresh entropy) or an integer >= 0."""
    value = plain(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecTypeError(f"{where}: expected an integer or None, got {value!r}")
    if value < 0:
        raise SpecError(f"{where}: must be >= 0, got {value!r}")
    return value


def _bound(where: str, value: Any) -> float:
    value = plain(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SpecTypeError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{where}: bounds must be finite, got {value!r}")
    return float(value)


def bounds(where: str, given: Any, log: Any) -> tuple[list[str], list[tuple[float, float]], list[bool]]:
    """Names, ``(low, high)`` pairs and log flags of a sampler's ``bounds`` and ``log`` arguments."""
    if not isinstance(given, Mapping) or not given:
        raise SpecTypeError(f"{where}: bounds: expected a non-empty dict of name: (low, high), got {given!r}")
    names = [check_name(f"{where}: bounds", name) for name in given]
    pairs = [_pair(f"{where}: bounds[{name!r}]", given[name]) for name in names]
    logged = _log_names(where, log, names)
    for name, (low, _) in zip(names, pairs):
        if name in logged and low <= 0:
            raise SpecError(f"{where}: bounds[{name!r}]: a log-scale parameter needs bounds > 0, "
                            f"got {given[name]!r}")
    return names, pairs, [name in logged for name in names]


def _pair(where: str, value: Any) -> tuple[float, float]:
    if not _is_list_like(value) or len(value) != 2:
        raise SpecTypeError(f"{where}: expected a (low, high) pair, got {value!r}")
    low, high = (_bound(where, bound) for bound in value)
    if not low < high:
        raise SpecError(f"{where}: low must be below high, got {value!r}")
    return low, high


def _log_names(where: str, log: Any, names: list[str]) -> set[str]:
    if isinstance(log, str):
        log = [log]
    if not _is_list_like(log):
        raise SpecTypeError(f"{where}: log: expected a list of names, got {log!r}")
    for name in log:
        if name not in names:
            raise SpecError(f"{where}: log: {name!r} is not a name in bounds (names: {', '.join(map(repr, names))})")
    return set(log)

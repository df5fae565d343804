"""Post-processing in the spirit of automan's ``filter_cases``: pick runs by their parameters.

>>> import pandas as pd
>>> df = pd.DataFrame({"nx": [10, 20, 40], "scheme": ["a", "b", "a"], "error": [0.3, 0.1, 0.02]})
>>> filter_runs(df, scheme="a")["nx"].tolist()
[10, 40]
>>> filter_runs(df, nx=[20, 40], scheme="a")["error"].tolist()
[0.02]
>>> filter_runs(df, lambda row: row["error"] < 0.2, nx=lambda n: n > 10)["nx"].tolist()
[20, 40]
>>> filter_runs([{"nx": 10}, {"nx": 20}], nx=20)
[{'nx': 20}]
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ensemble.errors import SpecError, SpecTypeError


def _matches(value: Any, wanted: Any) -> bool:
    if callable(wanted):
        return bool(wanted(value))
    if isinstance(wanted, (list, tuple, set, frozenset)):
        return value in wanted
    return value == wanted


def filter_runs(source: Any, predicate: Callable[[Mapping[str, Any]], bool] | None = None, **params: Any) -> Any:
    """The runs of ``source`` whose columns match every ``params`` value and ``predicate``.

    ``source`` is an :class:`~ensemble.Ensemble` (its :meth:`~ensemble.Ensemble.as_dataframe`), a
    DataFrame, or a list of sample dicts; the result is a DataFrame, or a list for a list.  A
    parameter value matches equal values; a list, tuple or set matches any of its members; a
    callable is called with the value.  ``predicate`` is called with each row (a mapping).
    """
    if hasattr(source, "as_dataframe"):
        source = source.as_dataframe()
    if predicate is not None and not callable(predicate):
        raise SpecTypeError(f"predicate: expected a function of one row, got {predicate!r}")
    if isinstance(source, list):
        return [row for row in source if _row_matches(row, predicate, params)]
    if not hasattr(source, "columns"):
        raise SpecTypeError(f"source: expected an Ensemble, a DataFrame or a list of dicts, got {type(source).__name__}")
    unknown = sorted(set(params) - set(source.columns))
    if unknown:
        raise SpecError(f"filter_runs: no column {', '.join(map(repr, unknown))}; the columns are "
                        f"{', '.join(map(str, source.columns))}")
    keep = [_row_matches(row, predicate, params) for row in source.to_dict("records")]
    return source[keep]


def _row_matches(row: Mapping[str, Any], predicate: Callable | None, params: dict[str, Any]) -> bool:
    if not isinstance(row, Mapping):
        raise SpecTypeError(f"source: expected rows that are dicts, got {row!r}")
    if any(name not in row or not _matches(row[name], wanted) for name, wanted in params.items()):
        return False
    return predicate is None or bool(predicate(row))

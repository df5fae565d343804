"""Sample lists from named value lists, and the algebra of sample lists.

A *space* is a plain list of samples, each a dict of labels to values, ready
for ``[Run(sample) for sample in space]``.  Every function returns a new list
of new dicts and leaves its arguments alone.  Lists already concatenate with
``+``; :func:`concat` does the same for any number of spaces.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from ensemble.errors import SpecError
from ensemble.params import checks
from ensemble.params.checks import Sample


def grid(**values: Any) -> list[Sample]:
    """Every combination of the given values (a Cartesian grid); the first name varies slowest.

    Like automan's ``mdict`` and psweep's ``pgrid(plist(...), ...)``.

    >>> grid(nx=[50, 100], re=[100, 200])
    [{'nx': 50, 're': 100}, {'nx': 50, 're': 200}, {'nx': 100, 're': 100}, {'nx': 100, 're': 200}]

    Any name works through ``**``: ``grid(**{"solver.tol": [1e-6, 1e-8]})``.
    """
    columns = _columns("grid", values)
    return [dict(zip(columns, combination)) for combination in itertools.product(*columns.values())]


def together(**values: Any) -> list[Sample]:
    """Values that vary together: the i-th sample takes the i-th value of every name.

    Like psweep's ``pgrid([zip(a, b)])`` and psyrun's ``Param(a=..., b=...)``; the
    lists must have the same length.

    >>> together(a=[1, 2], b=["xx", "yy"])
    [{'a': 1, 'b': 'xx'}, {'a': 2, 'b': 'yy'}]
    """
    columns = _columns("together", values)
    _same_lengths("together", {name: len(column) for name, column in columns.items()})
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def product(*spaces: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """The Cartesian product of spaces: every sample of the first with every sample of the next, ...

    Like automan's ``dprod`` and psyrun's ``*``.  A label in two spaces is an
    error (which value would win?).

    >>> product(together(a=[1, 2], b=["xx", "yy"]), grid(c=[88, None]))
    [{'a': 1, 'b': 'xx', 'c': 88}, {'a': 1, 'b': 'xx', 'c': None},
     {'a': 2, 'b': 'yy', 'c': 88}, {'a': 2, 'b': 'yy', 'c': None}]

    A constant is a space of one sample: ``product(space, [{"mesh": "fine"}])``.
    """
    lists = _spaces("product", spaces)
    return [checks.merge("product", combination) for combination in itertools.product(*lists)]


def zip_(*spaces: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Spaces side by side: the i-th sample merges the i-th sample of every space.

    :func:`together` is to ``zip_`` what :func:`grid` is to :func:`product`.  The
    spaces must have the same length and no label in common.

    >>> zip_(grid(x=[1, 2]), together(seed=[11, 12]))
    [{'x': 1, 'seed': 11}, {'x': 2, 'seed': 12}]
    """
    return side_by_side("zip_", spaces)


def side_by_side(where: str, spaces: tuple[Any, ...]) -> list[Sample]:
    """:func:`zip_` with errors that name ``where`` (psweep's ``pzip`` is the same function)."""
    lists = _spaces(where, spaces)
    _same_lengths(where, {f"spaces[{i}]": len(items) for i, items in enumerate(lists)})
    return [checks.merge(where, row) for row in zip(*lists)]


def concat(*spaces: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """All samples of all spaces, in order (psyrun's ``+``); samples may have different labels.

    >>> concat(grid(optimizer=["Adam"], lr=[0.01]), grid(optimizer=["LBFGS"], lr=[1.0, 0.1]))
    [{'optimizer': 'Adam', 'lr': 0.01}, {'optimizer': 'LBFGS', 'lr': 1.0}, {'optimizer': 'LBFGS', 'lr': 0.1}]
    """
    return [item for items in _spaces("concat", spaces, at_least=0) for item in items]


def difference(space: Iterable[Mapping[str, Any]], remove: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """The samples of ``space`` that match no sample of ``remove`` (psyrun's ``-``).

    A sample of ``remove`` matches every sample of ``space`` that has the same
    values for the labels it names (it may name fewer).  A label of ``remove``
    that no sample of ``space`` has is an error; to drop what a list of finished
    runs with extra labels (results) covers, use :func:`missing`.

    >>> difference(together(a=[1, 2], b=[1, 2]), [{"a": 1}])
    [{'a': 2, 'b': 2}]
    """
    items = checks.space("difference: space", space)
    removed = checks.space("difference: remove", remove)
    known = {label for item in items for label in item}
    for i, item in enumerate(removed):
        unknown = sorted(set(item) - known)
        if unknown:
            raise SpecError(f"difference: remove[{i}]: label {unknown[0]!r} is in no sample of space, got {item!r} "
                            "(to leave out what finished runs with more labels cover, use missing())")
    patterns: dict[frozenset[str], set[tuple[Any, ...]]] = {}
    for item in removed:
        patterns.setdefault(frozenset(item), set()).add(_project(item, item))
    return [item for item in items if not any(labels <= item.keys() and _project(item, labels) in keys
                                              for labels, keys in patterns.items())]


def missing(space: Iterable[Mapping[str, Any]], done: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """The samples of ``space`` that no sample of ``done`` covers, e.g. what is left to run.

    A sample of ``done`` covers a sample of ``space`` when it has the same value
    for every label of that sample; it may carry more labels (results, a run
    directory name).  Numbers compare by value, so ``1`` read back as ``1.0``
    still matches.  A label of ``space`` that no sample of ``done`` has is an
    error (nothing could ever match), unless ``done`` is empty.

    >>> missing(grid(a=[1, 2, 3]), [{"a": 2, "energy": -1.5}])
    [{'a': 1}, {'a': 3}]

    With an ensemble, ``missing(space, [run["sample"] for run in ens.runs()])``
    gives the samples to pass to :meth:`~ensemble.Ensemble.add_runs`.
    """
    items = checks.space("missing: space", space)
    finished = checks.space("missing: done", done)
    if not finished:
        return items
    known = {label for item in finished for label in item}
    for item in items:
        unknown = sorted(set(item) - known)
        if unknown:
            raise SpecError(f"missing: label {unknown[0]!r} of space sample {item!r} is in no sample of done")
    covered = {labels: {_project(item, labels) for item in finished if labels <= item.keys()}
               for labels in {frozenset(item) for item in items}}
    return [item for item in items if _project(item, item) not in covered[frozenset(item)]]


def unique(space: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """The samples of ``space`` without repeats, first occurrences in order (psweep's ``filter_params_unique``).

    >>> unique(concat(grid(a=[1, 2]), grid(a=[2, 3])))
    [{'a': 1}, {'a': 2}, {'a': 3}]
    """
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for item in checks.space("unique: space", space):
        key = _project(item, item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    return kept


def _columns(where: str, values: dict[str, Any]) -> dict[str, list[Any]]:
    if not values:
        raise SpecError(f"{where}: give at least one name=[values, ...]")
    return {name: checks.value_list(f"{where}: {name}", column) for name, column in values.items()}


def _spaces(where: str, spaces: tuple[Any, ...], at_least: int = 1) -> list[list[Sample]]:
    if len(spaces) < at_least:
        raise SpecError(f"{where}: give at least one space (a list of samples)")
    return [checks.space(f"{where}: spaces[{i}]", items) for i, items in enumerate(spaces)]


def _same_lengths(where: str, lengths: dict[str, int]) -> None:
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise SpecError(f"{where}: values that vary together need the same length; {listed}")


def _freeze(value: Any) -> Any:
    """A hashable stand-in for a sample value that compares like the value (lists and dicts included)."""
    value = checks.plain(value)
    if isinstance(value, Mapping):
        return ("dict", frozenset((key, _freeze(item)) for key, item in value.items()))
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0):
        return ("list", tuple(_freeze(item) for item in value))
    return value


def _project(item: Mapping[str, Any], labels: Iterable[str]) -> tuple[Any, ...]:
    return tuple((label, _freeze(item[label])) for label in sorted(labels))


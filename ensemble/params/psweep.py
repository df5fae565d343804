"""psweep's ``plist``, ``pgrid`` and ``pzip``, for scripts written for psweep.

They return the same samples as psweep for every input psweep handles as
intended.  Where psweep is silent or fails obscurely, these raise a
:class:`~ensemble.errors.SpecError` naming the argument: a name in two factors
(psweep lets the later value win), an empty list, plists of different lengths
given to ``pzip``.  ``pgrid(a)`` with a single plist, a documented psweep
gotcha, simply returns the samples of ``a``.  A ``zip()`` inside ``pgrid``
still drops the values past the shortest plist, as ``zip`` does; ``pzip(a, b)``
or ``zip(a, b, strict=True)`` refuse that.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ensemble.errors import SpecError, SpecTypeError
from ensemble.params import checks
from ensemble.params.checks import Sample
from ensemble.params.spaces import side_by_side


def plist(name: str, values: Any) -> list[Sample]:
    """One parameter as a list of one-label samples.

    >>> plist("a", [1, 2])
    [{'a': 1}, {'a': 2}]
    """
    checks.check_name("plist: name", name)
    return [{name: value} for value in checks.value_list(f"plist: {name}", values)]


def pgrid(*factors: Any) -> list[Sample]:
    """Every combination of the factors; a factor is a plist, a sample list or a ``zip`` of plists.

    ``pgrid(a, b)`` and ``pgrid([a, b])`` are the same; the plists inside a
    ``zip`` vary together.

    >>> a, b, c = plist("a", [1, 2]), plist("b", ["xx", "yy"]), plist("c", [88, None, "Z"])
    >>> pgrid(a, b)
    [{'a': 1, 'b': 'xx'}, {'a': 1, 'b': 'yy'}, {'a': 2, 'b': 'xx'}, {'a': 2, 'b': 'yy'}]
    >>> pgrid([zip(a, b)])
    [{'a': 1, 'b': 'xx'}, {'a': 2, 'b': 'yy'}]
    >>> len(pgrid(zip(a, b), c))
    6
    """
    if len(factors) == 1 and not _is_factor(factors[0]):
        factors = tuple(_listed("pgrid: plists", factors[0]))
    if not factors:
        raise SpecError("pgrid: give at least one plist")
    lists = [_factor(f"pgrid: factor {i}", factor) for i, factor in enumerate(factors)]
    return [checks.merge("pgrid", combination) for combination in itertools.product(*lists)]


def pzip(*plists: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Plists (or any sample lists) that vary together; they must have the same length.

    ``pzip(a, b)`` is ``pgrid([zip(a, b)])`` with a check that nothing is dropped.

    >>> pzip(plist("a", [1, 2]), plist("b", ["xx", "yy"]))
    [{'a': 1, 'b': 'xx'}, {'a': 2, 'b': 'yy'}]
    """
    return side_by_side("pzip", plists)


def _is_factor(arg: Any) -> bool:
    """Whether a lone ``pgrid`` argument is one factor (a plist or a zip) rather than a list of factors."""
    if isinstance(arg, zip):
        return True
    return isinstance(arg, Sequence) and bool(arg) and all(isinstance(item, Mapping) for item in arg)


def _listed(where: str, arg: Any) -> list[Any]:
    if isinstance(arg, (str, bytes, Mapping)) or not isinstance(arg, Iterable):
        raise SpecTypeError(f"{where}: expected plists or a list of plists, got {arg!r}")
    try:
        return list(arg)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _factor(where: str, factor: Any) -> list[Sample]:
    items = [_row(f"{where}[{i}]", item) for i, item in enumerate(_listed(where, factor))]
    if not items:
        raise SpecError(f"{where}: is empty (no samples)")
    return items


def _row(where: str, item: Any) -> Sample:
    """One element of a factor: a sample, or a (nested) tuple of samples from ``zip``, merged."""
    if isinstance(item, Mapping):
        return checks.sample(where, item)
    if isinstance(item, (tuple, list)):
        return checks.merge(where, [_row(f"{where}[{i}]", part) for i, part in enumerate(item)])
    raise SpecTypeError(f"{where}: expected a sample (a dict) or a tuple of them from zip(), got {item!r}")

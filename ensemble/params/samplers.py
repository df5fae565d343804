"""Random and quasi-random samples: uniform, Latin hypercube and Sobol'.

Each sampler takes the number of samples ``n``, ``bounds`` (a dict of
``name: (low, high)``, names in the order the samples list them), a ``seed``
and ``log``, the names sampled uniformly in log space (their bounds must be
> 0).  The same arguments give the same samples; ``seed=None`` draws fresh
entropy.  Values are Python floats within the bounds.

:func:`latin_hypercube` and :func:`sobol` use :mod:`scipy.stats.qmc` (``pip
install 'ensemble[params]'`` or ``pip install scipy``).  Without scipy,
``latin_hypercube`` falls back on a numpy implementation with the same
stratification but a different stream: the same seed gives other samples
with and without scipy.  ``sobol`` needs scipy.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import numpy as np

from ensemble.errors import EnsembleError
from ensemble.params import checks
from ensemble.params.checks import Sample


def uniform(n: int, bounds: Mapping[str, tuple[float, float]], *, seed: int | None = None,
            log: Any = ()) -> list[Sample]:
    """``n`` independent uniform samples within ``bounds`` (numpy's default generator).

    >>> samples = uniform(3, {"x": (0, 10), "lr": (1e-4, 1e-1)}, seed=0, log=["lr"])
    >>> [round(sample["x"], 3) for sample in samples]
    [6.37, 0.41, 8.133]
    >>> all(1e-4 <= sample["lr"] <= 1e-1 for sample in samples)
    True
    """
    names, pairs, logged = checks.bounds("uniform", bounds, log)
    count, rng = _start("uniform", n, seed)
    return _samples(names, pairs, logged, rng.random((count, len(names))))


def latin_hypercube(n: int, bounds: Mapping[str, tuple[float, float]], *, seed: int | None = None,
                    log: Any = ()) -> list[Sample]:
    """``n`` Latin hypercube samples: each parameter has exactly one sample in each of ``n`` equal strata.

    >>> samples = latin_hypercube(4, {"x": (0, 1), "y": (10, 20)}, seed=0)
    >>> sorted(int(sample["x"] * 4) for sample in samples)
    [0, 1, 2, 3]
    >>> sorted(int((sample["y"] - 10) / 2.5) for sample in samples)
    [0, 1, 2, 3]
    """
    names, pairs, logged = checks.bounds("latin_hypercube", bounds, log)
    count, rng = _start("latin_hypercube", n, seed)
    qmc = _qmc()
    if qmc is None:
        unit = (np.argsort(rng.random((len(names), count)), axis=1).T + rng.random((count, len(names)))) / count
    else:
        unit = _engine(qmc.LatinHypercube, len(names), rng).random(count)
    return _samples(names, pairs, logged, unit)


def sobol(n: int, bounds: Mapping[str, tuple[float, float]], *, seed: int | None = None,
          log: Any = ()) -> list[Sample]:
    """``n`` scrambled Sobol' samples (:class:`scipy.stats.qmc.Sobol`); needs scipy.

    A power of two for ``n`` keeps the sequence balanced; scipy warns otherwise.

    >>> samples = sobol(8, {"x": (0, 1), "dt": (1e-3, 1e-1)}, seed=0, log=["dt"])
    >>> sorted(int(sample["x"] * 8) for sample in samples)
    [0, 1, 2, 3, 4, 5, 6, 7]
    """
    names, pairs, logged = checks.bounds("sobol", bounds, log)
    count, rng = _start("sobol", n, seed)
    qmc = _qmc()
    if qmc is None:
        raise EnsembleError("sobol: needs scipy, which is not installed "
                            "(pip install scipy, or pip install 'ensemble[params]')")
    return _samples(names, pairs, logged, _engine(qmc.Sobol, len(names), rng).random(count))


def _start(where: str, n: Any, seed: Any) -> tuple[int, np.random.Generator]:
    count = checks.count(f"{where}: n", n)
    return count, np.random.default_rng(checks.seed(f"{where}: seed", seed))


def _qmc() -> ModuleType | None:
    try:
        from scipy.stats import qmc
    except ImportError:
        return None
    return qmc


def _engine(kind: Any, dimensions: int, rng: np.random.Generator) -> Any:
    """A scipy QMC engine drawing from ``rng`` (``rng=`` since scipy 1.15, ``seed=`` before)."""
    try:
        return kind(dimensions, rng=rng)
    except TypeError:
        return kind(dimensions, seed=rng)


def _samples(names: list[str], pairs: list[tuple[float, float]], logged: list[bool],
             unit: np.ndarray) -> list[Sample]:
    """Points of the unit cube scaled to the bounds, log-uniformly for the logged names."""
    low = np.array([math.log(lo) if lg else lo for (lo, _), lg in zip(pairs, logged)])
    high = np.array([math.log(hi) if lg else hi for (_, hi), lg in zip(pairs, logged)])
    values = low + unit * (high - low)
    values[:, logged] = np.exp(values[:, logged])
    values = np.clip(values, [lo for lo, _ in pairs], [hi for _, hi in pairs])
    return [dict(zip(names, row)) for row in values.tolist()]

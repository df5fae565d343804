"""ensemble.params samplers: uniform, Latin hypercube (scipy and numpy) and Sobol', seeds, bounds, log scale."""
from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest

from ensemble import EnsembleError, SpecError, SpecTypeError
from ensemble.params import grid, latin_hypercube, product, sobol, uniform

BOUNDS = {"x": (-1.0, 3.0), "lr": (1e-5, 1e-1), "n": (10, 20)}
SAMPLERS = [uniform, latin_hypercube, sobol]


@pytest.fixture
def no_scipy(monkeypatch):
    """Make ``import scipy.stats`` fail, as on a machine without scipy."""
    for name in ("scipy", "scipy.stats", "scipy.stats.qmc"):
        monkeypatch.setitem(sys.modules, name, None)


def needs_scipy(sampler):
    if sampler is not uniform:
        pytest.importorskip("scipy.stats")


def strata(values: list[float], low: float, high: float, n: int) -> list[int]:
    return sorted(min(int((value - low) / (high - low) * n), n - 1) for value in values)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_samples_other_seed_other_samples(sampler):
    needs_scipy(sampler)
    first = sampler(16, BOUNDS, seed=3, log=["lr"])
    assert first == sampler(16, BOUNDS, seed=3, log=["lr"])
    assert first != sampler(16, BOUNDS, seed=4, log=["lr"])
    assert sampler(16, BOUNDS) != sampler(16, BOUNDS), "seed=None draws fresh entropy"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_samples_are_plain_floats_within_bounds_in_the_order_of_bounds(sampler):
    needs_scipy(sampler)
    samples = sampler(32, BOUNDS, seed=1, log="lr")
    assert len(samples) == 32 and all(list(sample) == ["x", "lr", "n"] for sample in samples)
    for name, (low, high) in BOUNDS.items():
        values = [sample[name] for sample in samples]
        assert all(type(value) is float and low <= value <= high for value in values), name


@pytest.mark.parametrize("sampler", [latin_hypercube, sobol])
def test_stratified_samplers_fill_every_stratum_linear_and_log(sampler):
    needs_scipy(sampler)
    samples = sampler(16, BOUNDS, seed=5, log=["lr"])
    assert strata([s["x"] for s in samples], -1.0, 3.0, 16) == list(range(16))
    logs = [math.log(s["lr"]) for s in samples]
    assert strata(logs, math.log(1e-5), math.log(1e-1), 16) == list(range(16))


def test_log_scale_spreads_samples_over_decades():
    samples = uniform(4000, {"lr": (1e-6, 1.0)}, seed=0, log=["lr"])
    decades = np.histogram(np.log10([s["lr"] for s in samples]), bins=6, range=(-6, 0))[0]
    assert decades.min() > 500, decades
    linear = uniform(4000, {"lr": (1e-6, 1.0)}, seed=0)
    assert sum(s["lr"] < 0.1 for s in linear) < 500


def test_uniform_stream_is_numpys_default_generator():
    unit = np.random.default_rng(9).random((3, 1))
    assert [s["x"] for s in uniform(3, {"x": (2.0, 4.0)}, seed=9)] == (2.0 + 2.0 * unit[:, 0]).tolist()


def test_latin_hypercube_uses_scipy_when_installed():
    qmc = pytest.importorskip("scipy.stats.qmc")
    unit = qmc.LatinHypercube(2, seed=np.random.default_rng(2)).random(5)
    samples = latin_hypercube(5, {"x": (0.0, 1.0), "y": (0.0, 10.0)}, seed=2)
    assert np.allclose([[s["x"], s["y"] / 10] for s in samples], unit)


def test_latin_hypercube_without_scipy_is_numpy_deterministic_and_stratified(no_scipy):
    samples = latin_hypercube(10, BOUNDS, seed=8, log=["lr"])
    assert samples == latin_hypercube(10, BOUNDS, seed=8, log=["lr"])
    assert samples != latin_hypercube(10, BOUNDS, seed=9, log=["lr"])
    for name, (low, high) in BOUNDS.items():
        values = [math.log(s[name]) for s in samples] if name == "lr" else [s[name] for s in samples]
        edges = (math.log(low), math.log(high)) if name == "lr" else (low, high)
        assert strata(values, *edges, 10) == list(range(10)), name


def test_sobol_without_scipy_says_how_to_install_it(no_scipy):
    with pytest.raises(EnsembleError, match=r"sobol: needs scipy.*pip install scipy"):
        sobol(8, BOUNDS, seed=1)


def test_sobol_warns_only_when_n_is_no_power_of_two():
    pytest.importorskip("scipy.stats")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sobol(8, BOUNDS, seed=1)
    with pytest.warns(UserWarning, match="power of 2"):
        sobol(6, BOUNDS, seed=1)


def test_samples_combine_with_grids():
    space = product(uniform(3, {"x": (0, 1)}, seed=1), grid(mesh=["coarse", "fine"]))
    assert len(space) == 6 and [s["mesh"] for s in space[:2]] == ["coarse", "fine"]


BAD = [
    ({"n": 0}, SpecError, "{name}: n: must be >= 1, got 0"),
    ({"n": -2}, SpecError, "{name}: n: must be >= 1, got -2"),
    ({"n": 2.0}, SpecTypeError, "{name}: n: expected an integer number of samples, got 2.0"),
    ({"n": True}, SpecTypeError, "{name}: n: expected an integer number of samples, got True"),
    ({"bounds": {}}, SpecTypeError, "{name}: bounds: expected a non-empty dict of name: (low, high), got {{}}"),
    ({"bounds": [(0, 1)]}, SpecTypeError, "{name}: bounds: expected a non-empty dict"),
    ({"bounds": {"x": 1}}, SpecTypeError, "{name}: bounds['x']: expected a (low, high) pair, got 1"),
    ({"bounds": {"x": (0, 1, 2)}}, SpecTypeError, "{name}: bounds['x']: expected a (low, high) pair, got (0, 1, 2)"),
    ({"bounds": {"x": (1, 0)}}, SpecError, "{name}: bounds['x']: low must be below high, got (1, 0)"),
    ({"bounds": {"x": (1, 1)}}, SpecError, "{name}: bounds['x']: low must be below high, got (1, 1)"),
    ({"bounds": {"x": (0, math.inf)}}, SpecError, "{name}: bounds['x']: bounds must be finite, got inf"),
    ({"bounds": {"x": (math.nan, 1)}}, SpecError, "{name}: bounds['x']: bounds must be finite, got nan"),
    ({"bounds": {"x": ("0", 1)}}, SpecTypeError, "{name}: bounds['x']: expected a number, got '0'"),
    ({"bounds": {3: (0, 1)}}, SpecTypeError, "{name}: bounds: a parameter name must be a string, got 3"),
    ({"log": ["y"]}, SpecError, "{name}: log: 'y' is not a name in bounds (names: 'x')"),
    ({"log": 5}, SpecTypeError, "{name}: log: expected a list of names, got 5"),
    ({"bounds": {"x": (0, 1)}, "log": ["x"]}, SpecError,
     "{name}: bounds['x']: a log-scale parameter needs bounds > 0, got (0, 1)"),
    ({"bounds": {"x": (-2, 1)}, "log": "x"}, SpecError, "{name}: bounds['x']: a log-scale parameter needs bounds > 0"),
    ({"seed": -1}, SpecError, "{name}: seed: must be >= 0, got -1"),
    ({"seed": 1.5}, SpecTypeError, "{name}: seed: expected an integer or None, got 1.5"),
]


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("change, error, message", BAD)
def test_bad_input_names_sampler_argument_and_value(sampler, change, error, message, no_scipy):
    arguments = {"n": 4, "bounds": {"x": (0.5, 2.0)}, "seed": 0, "log": (), **change}
    with pytest.raises(error) as caught:
        sampler(arguments.pop("n"), arguments.pop("bounds"), **arguments)
    assert message.format(name=sampler.__name__) in str(caught.value)

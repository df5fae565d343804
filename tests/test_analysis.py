"""``filter_runs``: its doctests, an executed ensemble, and clear errors."""
from __future__ import annotations

import doctest

import pytest
from engine_helpers import create, execute, run, sh

import ensemble.results.analysis
from ensemble import filter_runs
from ensemble.errors import SpecError


def test_doctests():
    assert doctest.testmod(ensemble.results.analysis).failed == 0


def test_filter_an_executed_ensemble(edir):
    ens = create([run(x, sh(f"echo '{{\"err\": {x / 10}}}' > ensemble_result.json")) for x in range(5)])
    execute(ens)
    picked = filter_runs(ens, lambda row: row["err"] >= 0.2, x=[1, 2, 3, 4], status="success")
    assert picked.index.tolist() == [3, 4, 5]
    assert picked["err"].tolist() == [0.2, 0.3, 0.4]


def test_unknown_columns_are_named():
    import pandas as pd

    with pytest.raises(SpecError, match="filter_runs: no column 'nope'; the columns are a, b"):
        filter_runs(pd.DataFrame({"a": [1], "b": [2]}), nope=1)

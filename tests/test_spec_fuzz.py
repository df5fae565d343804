"""Generated specs never end in a traceback: ``create`` either succeeds or raises an error of
ours naming a field, and a refused create leaves no setup directory behind (issue 12's fuzzing
over Steps, samples, run_dir_names, globs, abort_on, resources)."""
from __future__ import annotations

import math
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ensemble import CompositeRun, Ensemble, Step
from ensemble.errors import EnsembleError

WEIRD = st.one_of(
    st.none(), st.booleans(), st.integers(-2**64, 2**64), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.just("\0"), st.lists(st.integers(-3, 300), max_size=3), st.dictionaries(
        st.text(max_size=3), st.integers(), max_size=2), st.just(()), st.just(object()),
)
COUNTS = st.one_of(st.integers(-3, 5), WEIRD)
#: The field names errors are allowed to start with (``field: ...`` or ``Step.field: ...``).
FIELD = re.compile(r"^(Step\.|Run\.|CompositeRun\.|sample\b|runs?\b|run_|abort_on|max_|application|app_|"
                   r"setup_dir|template|strict|result_file|use_flux|steps?\b|create:)")


def build(step: dict, sample, run_dir_names, abort_on, max_restarts):
    return dict(runs=[CompositeRun(sample, [Step(**step)])], run_dir_names=run_dir_names, abort_on=abort_on,
                max_restarts=max_restarts, app_is_batch_script=False)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.one_of(st.just(["/bin/true"]), st.just("/bin/true -v"), WEIRD), tasks=COUNTS, cores=COUNTS,
       gpus=COUNTS, timeout=st.one_of(st.floats(-1, 10), WEIRD), cwd=st.one_of(st.just("."), WEIRD),
       sample=st.one_of(st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.floats(), st.text(max_size=4)),
                                        max_size=3), WEIRD),
       run_dir_names=st.one_of(st.none(), st.just("runs/{run_id}"), st.text(max_size=10), WEIRD),
       abort_on=st.one_of(st.none(), WEIRD), max_restarts=COUNTS)
def test_create_succeeds_or_names_the_field(tmp_path, monkeypatch, args, tasks, cores, gpus, timeout, cwd, sample,
                                            run_dir_names, abort_on, max_restarts):
    monkeypatch.chdir(tmp_path)
    setup = tmp_path / f"s{os.getpid()}{abs(hash((repr(args), repr(sample), repr(run_dir_names))))}"
    step = dict(args=args, tasks=tasks, cores_per_task=cores, gpus_per_task=gpus, timeout=timeout, cwd=cwd,
                batch_script=False)
    try:
        Ensemble.create(setup_dir=setup, **build(step, sample, run_dir_names, abort_on, max_restarts)).close()
    except EnsembleError as exc:
        assert not setup.exists(), "a refused create leaves nothing behind"
        assert FIELD.match(str(exc)), f"the error names no field: {exc}"
        assert "\n" not in str(exc)
        return
    assert setup.is_dir()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_sample_values_are_refused(tmp_path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(EnsembleError, match=r"sample\['x'\]"):
        Ensemble.create(setup_dir="s", runs=[CompositeRun({"x": value}, [Step(["/bin/true"], batch_script=False)])])
    assert not (tmp_path / "s").exists()

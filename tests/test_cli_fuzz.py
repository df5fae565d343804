"""Generated command-line input never ends in a traceback: status 0 or 2, one error line."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ensemble import Ensemble, Run
from ensemble.cli import main

ID_TOKENS = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.tuples(st.integers(-10, 2**66), st.integers(-10, 2**66)).map(lambda p: f"{p[0]}-{p[1]}"),
    st.text(alphabet="0123456789-, x.", max_size=12),
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    Ensemble.create(runs=[Run({"x": i}) for i in range(3)], application="/bin/true", app_is_batch_script=False,
                    setup_dir=root / "s")
    return root / "s"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=ID_TOKENS)
def test_run_ids_are_read_or_refused_cleanly(setup, capsys, token):
    code = main(["--setup-dir", str(setup), "status", "--", token])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    assert code == 0 or err.startswith("ensemble: error: ") and err.count("\n") == 1, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.text(alphabet="{}x0.[]!:-ab ", max_size=10))
def test_args_templates_are_formatted_or_refused_cleanly(tmp_path, capsys, args):
    samples = tmp_path / "s.csv"
    samples.write_text("x\n1\n")
    setup = tmp_path / f"e{abs(hash(args))}"
    code = main(["--setup-dir", str(setup), "create", str(samples), "--application", "/bin/true",
                 "--no-batch-script", f"--args={args}"])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err
    assert setup.exists() == (code == 0), "nothing is created for a refused template"

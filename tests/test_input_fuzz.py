"""Generated bad input of three more kinds never ends in a traceback or a half-written setup
directory: CSV files for ``ensemble create``, input-deck templates, app-interface modules."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ensemble import Ensemble, EnsembleError, Run
from ensemble.cli import main
from ensemble.spec.templating import Template, TemplateError

CSV_TEXT = st.text(alphabet='x,y"\n\r 1.5e-\0\ufeffnaNinf\t;', max_size=40)
TEMPLATE_TEXT = st.text(alphabet="%x y{}_-.1\n", max_size=30)
INTERFACES = st.sampled_from([
    "def post_run(run_id, sample, run_dir):\n    return {}\n",
    "def post_run(\n",                              # a syntax error
    "import no_such_module_for_ensemble\n",         # an import that fails
    "raise RuntimeError('at import')\n",
    "post_run = 3\n",                               # a hook that is not callable
    "prep_run = None\n",
    "",                                            # no hooks at all
    "import sys\nsys.exit(4)\n",                    # exits while it is imported
    "\0\0\0",                                      # not text
])
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(text=CSV_TEXT)
def test_cli_create_reads_a_csv_or_refuses_it_in_one_line(tmp_path, capsys, text):
    samples, setup = tmp_path / "samples.csv", tmp_path / f"s{abs(hash(text))}"
    samples.write_bytes(text.encode("utf-8", "surrogatepass"))
    code = main(["--setup-dir", str(setup), "create", "--application", "/bin/true", "--no-batch-script",
                 str(samples)])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert err.startswith("ensemble: error: ") and err.count("\n") == 1, err
        assert not setup.exists(), "a refused create leaves nothing behind"


@SETTINGS
@given(text=TEMPLATE_TEXT, sample=st.dictionaries(st.sampled_from(["x", "y", "x_1"]), st.integers(), max_size=3))
def test_a_template_renders_or_names_the_unknown_token_and_line(tmp_path, text, sample):
    path = tmp_path / "deck.in"
    path.write_text(text)
    template = Template.load(path)
    try:
        out = template.render(sample)
    except TemplateError as exc:
        assert str(path) in str(exc) and "line" in str(exc) and "%%" in str(exc), exc
        return
    assert all(f"%%{name}%%" not in out for name in sample)


@SETTINGS
@given(source=INTERFACES)
def test_an_app_interface_is_accepted_or_refused_naming_it(tmp_path, source):
    interface, setup = tmp_path / "iface.py", tmp_path / f"s{abs(hash(source))}"
    interface.write_text(source)
    try:
        Ensemble.create(runs=[Run({"x": 1})], application="/bin/true", app_is_batch_script=False,
                        setup_dir=setup, app_interface=interface)
    except EnsembleError as exc:
        assert str(exc).startswith("app_interface: "), exc
        assert not setup.exists(), "a refused create leaves nothing behind"
        return
    except SystemExit:
        pytest.fail("an interface that exits at import ended the caller")
    assert (setup / "ensemble.db").is_file()

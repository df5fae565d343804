"""ensemble.params: grids, zips and the algebra of sample lists, the psweep / automan / psyrun
seeds' worked examples, run directory names, and every doctest (docstrings and docs/params.rst)."""
from __future__ import annotations

import doctest
import importlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ensemble import Ensemble, Run, SpecError, SpecTypeError
from ensemble.params import (
    concat,
    difference,
    dir_name,
    grid,
    missing,
    pgrid,
    plist,
    product,
    pzip,
    together,
    unique,
    zip_,
)

ROOT = Path(__file__).resolve().parent.parent
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
MODULES = ["ensemble.params", "ensemble.params.spaces", "ensemble.params.psweep", "ensemble.params.samplers",
           "ensemble.params.files", "ensemble.params.names"]


def columns(space: list[dict]) -> dict[str, list]:
    """A space as psyrun's ``build()`` shows it: one list per label."""
    return {label: [sample[label] for sample in space] for label in space[0]}


# -- doctests ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_hold(name):
    if name.endswith("samplers"):
        pytest.importorskip("scipy.stats", reason="sobol's example needs scipy")
    result = doctest.testmod(importlib.import_module(name), optionflags=FLAGS)
    assert result.attempted > 0 and result.failed == 0, result


def test_docs_page_examples_hold():
    result = doctest.testfile(str(ROOT / "docs" / "params.rst"), module_relative=False, optionflags=FLAGS)
    assert result.attempted >= 30 and result.failed == 0, result


def test_docs_page_is_in_the_toctree_and_the_api_page_documents_every_name():
    import ensemble.params

    assert "   params\n" in (ROOT / "docs" / "index.rst").read_text()
    api = (ROOT / "docs" / "api.rst").read_text()
    assert [name for name in ensemble.params.__all__ if f"autofunction:: ensemble.params.{name}\n" not in api] == []


# -- psweep's worked examples (seed 002) ---------------------------------------------------------------------------------
def test_psweep_getting_started_grid():
    params = pgrid(plist("a", [1, 2, 3]), plist("b", [88, 99]))
    assert params == [{"a": 1, "b": 88}, {"a": 1, "b": 99}, {"a": 2, "b": 88},
                      {"a": 2, "b": 99}, {"a": 3, "b": 88}, {"a": 3, "b": 99}]


def test_psweep_building_parameter_grids():
    a, b = plist("a", [1, 2]), plist("b", ["xx", "yy"])
    assert a == [{"a": 1}, {"a": 2}] and b == [{"b": "xx"}, {"b": "yy"}]
    expected = [{"a": 1, "b": "xx"}, {"a": 1, "b": "yy"}, {"a": 2, "b": "xx"}, {"a": 2, "b": "yy"}]
    assert pgrid(a, b) == pgrid([a, b]) == pgrid((a, b)) == expected
    assert pgrid([zip(a, b)]) == [{"a": 1, "b": "xx"}, {"a": 2, "b": "yy"}]
    c = plist("c", [88, None, "Z"])
    with_c = [{"a": 1, "b": "xx", "c": 88}, {"a": 1, "b": "xx", "c": None}, {"a": 1, "b": "xx", "c": "Z"},
              {"a": 2, "b": "yy", "c": 88}, {"a": 2, "b": "yy", "c": None}, {"a": 2, "b": "yy", "c": "Z"}]
    assert pgrid(zip(a, b), c) == pgrid([zip(a, b), c]) == with_c
    const = plist("const", [1.23])
    assert pgrid(zip(a, b), c, const) == [{**sample, "const": 1.23} for sample in with_c]


def test_psweep_gotchas_single_plist_and_zip():
    a, b = plist("a", [1, 2]), plist("b", ["xx", "yy"])
    assert pgrid([a]) == pgrid(a) == [{"a": 1}, {"a": 2}], "pgrid(a) is the obvious thing, not psweep's error"
    assert pgrid(zip(a, b)) == pgrid([zip(a, b)]) == pzip(a, b) == together(a=[1, 2], b=["xx", "yy"])


def test_psweep_zip_lengths_are_checked_where_they_can_be():
    a, b = plist("a", [1, 2, 3]), plist("b", ["xx", "yy"])
    with pytest.raises(SpecError, match=r"pzip: .*same length; spaces\[0\] has 3, spaces\[1\] has 2"):
        pzip(a, b)
    with pytest.raises(SpecError, match=r"pgrid: factor 0: zip\(\) argument 2 is shorter than argument 1"):
        pgrid([zip(a, b, strict=True)])
    assert pgrid([zip(a, b)]) == [{"a": 1, "b": "xx"}, {"a": 2, "b": "yy"}], "a plain zip truncates, as in psweep"


def test_pgrid_flattens_nested_zips():
    a, b, c = plist("a", [1, 2]), plist("b", [3, 4]), plist("c", [5, 6])
    assert pgrid([zip(zip(a, b), c)]) == [{"a": 1, "b": 3, "c": 5}, {"a": 2, "b": 4, "c": 6}]


@pytest.mark.parametrize("call, error, message", [
    (lambda: pgrid(), SpecError, "pgrid: give at least one plist"),
    (lambda: pgrid([]), SpecError, "pgrid: give at least one plist"),
    (lambda: pgrid(5), SpecTypeError, "pgrid: plists: expected plists or a list of plists, got 5"),
    (lambda: pgrid([5]), SpecTypeError, "pgrid: factor 0: expected plists or a list of plists, got 5"),
    (lambda: pgrid(plist("a", [1]), [5]), SpecTypeError, "pgrid: factor 1[0]: expected a sample (a dict) or a tuple"),
    (lambda: pgrid(plist("a", [1]), []), SpecError, "pgrid: factor 1: is empty"),
    (lambda: pgrid(plist("a", [1]), plist("a", [2])), SpecError, "pgrid: label 'a' is in two of the combined spaces"),
    (lambda: plist(1, [1]), SpecTypeError, "plist: name: a parameter name must be a string, got 1"),
    (lambda: plist("a", 3), SpecTypeError, "plist: a: expected a list of values, got 3"),
    (lambda: plist("a", []), SpecError, "plist: a: must hold at least one value, got []"),
])
def test_psweep_names_refuse_bad_input(call, error, message):
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value)


# -- automan's worked examples (seed 000) --------------------------------------------------------------------------------
def test_automan_mdict_and_dprod():
    opts = grid(nx=[50, 100], re=[100, 200])
    assert opts == [{"nx": 50, "re": 100}, {"nx": 50, "re": 200}, {"nx": 100, "re": 100}, {"nx": 100, "re": 200}]
    opts2 = grid(optimizer=["Adam"], lr=[1e-2, 1e-3]) + grid(optimizer=["LBFGS"], lr=[1.0, 0.1])
    options = product(opts, opts2)
    assert type(options) is list and len(options) == 16
    assert options[0] == {"nx": 50, "re": 100, "optimizer": "Adam", "lr": 1e-2}
    assert options[-1] == {"nx": 100, "re": 200, "optimizer": "LBFGS", "lr": 0.1}
    assert unique(options) == options


def test_automan_dprod_docstring_example():
    assert product(grid(a=[1, 2], b=["xy"]), grid(c=["a", "b"])) == [
        {"a": 1, "b": "xy", "c": "a"}, {"a": 1, "b": "xy", "c": "b"},
        {"a": 2, "b": "xy", "c": "a"}, {"a": 2, "b": "xy", "c": "b"}]


def test_automan_opts2path_examples_in_dir_name_form():
    opts = dict(x=1, y="hello", z=0.1)
    assert dir_name(opts) == "x=1_y=hello_z=0.1"
    assert dir_name(opts, keys=["x"]) == "x=1"
    assert dir_name(opts, ignore=["x"]) == "y=hello_z=0.1"
    assert dir_name(opts, rename=dict(x="XX")) == "XX=1_y=hello_z=0.1"


# -- psyrun's worked examples (seed 004) ---------------------------------------------------------------------------------
def test_psyrun_parameter_space_algebra():
    assert columns(together(a=[1, 2], b=[1, 2])) == {"a": [1, 2], "b": [1, 2]}
    assert columns(product(together(a=[1, 2]), together(b=[1, 2]))) == {"a": [1, 1, 2, 2], "b": [1, 2, 1, 2]}
    assert columns(concat(together(a=[1]), together(a=[2]))) == {"a": [1, 2]}
    assert columns(difference(together(a=[1, 2], b=[1, 2]), together(a=[1]))) == {"a": [2], "b": [2]}
    assert columns(missing(together(a=[1, 2, 3]), together(a=[2]))) == {"a": [1, 3]}


def test_difference_compares_whole_samples_not_columns():
    space = grid(a=[1, 2], b=[1, 2])
    assert difference(space, [{"a": 1, "b": 2}, {"a": 2, "b": 1}]) == [{"a": 1, "b": 1}, {"a": 2, "b": 2}]
    assert difference(space, [{"b": 2}, {"a": 2, "b": 1}]) == [{"a": 1, "b": 1}]
    assert difference(space, []) == space


def test_missing_ignores_extra_labels_and_compares_numbers_by_value():
    space = grid(a=[1, 2, 3], mesh=["fine"])
    done = [{"a": 2.0, "mesh": "fine", "energy": -1.5, "run_id": 7}, {"a": 3, "mesh": "coarse"}]
    assert missing(space, done) == [{"a": 1, "mesh": "fine"}, {"a": 3, "mesh": "fine"}]
    assert missing(space, []) == space
    assert missing([], done) == []


def test_missing_and_unique_handle_list_and_dict_values():
    space = together(shape=[[1, 2], [2, 1]], opts=[{"k": 1}, {"k": 2}])
    assert missing(space, [{"shape": [1, 2], "opts": {"k": 1}, "energy": 0.5}]) == [space[1]]
    assert unique(space + space) == space


def test_missing_over_samples_with_different_labels():
    space = grid(optimizer=["Adam"], lr=[1e-2, 1e-3]) + grid(optimizer=["LBFGS"], history=[5, 10])
    done = [{"optimizer": "Adam", "lr": 1e-3}, {"optimizer": "LBFGS", "history": 5, "loss": 0.1}]
    assert missing(space, done) == [{"optimizer": "Adam", "lr": 1e-2}, {"optimizer": "LBFGS", "history": 10}]


def test_missing_against_a_dataframe_of_results():
    frame = pd.DataFrame({"a": [1, 3], "energy": [0.5, None]})
    assert missing(grid(a=[1, 2, 3]), frame.to_dict("records")) == [{"a": 2}]


def test_missing_against_an_ensembles_runs(workdir):
    first = grid(x=[0, 1], y=[10, 20])
    ens = Ensemble.create(application=shutil.which("true"), runs=[Run(s) for s in first], setup_dir="s.ens",
                          app_is_batch_script=False)
    space = grid(x=[0, 1, 2], y=[10, 20])
    have = [run["sample"] for run in ens.runs()]
    assert missing(space, have) == [{"x": 2, "y": 10}, {"x": 2, "y": 20}]
    ens.close()


# -- builders ------------------------------------------------------------------------------------------------------------
def test_grid_order_types_and_numpy_values():
    space = grid(x=np.linspace(0.0, 1.0, 3), n=np.arange(2), name=("a",), k=range(1))
    assert [(s["x"], s["n"]) for s in space] == [(0.0, 0), (0.0, 1), (0.5, 0), (0.5, 1), (1.0, 0), (1.0, 1)]
    assert {type(s["x"]) for s in space} == {float} and {type(s["n"]) for s in space} == {int}
    assert list(space[0]) == ["x", "n", "name", "k"]
    assert grid(**{"solver.tol": [1e-6]}) == [{"solver.tol": 1e-6}]


def test_product_and_zip_accept_any_iterable_of_samples():
    assert product(iter([{"a": 1}]), ({"b": b} for b in (1, 2))) == [{"a": 1, "b": 1}, {"a": 1, "b": 2}]
    assert zip_(grid(x=[1, 2]), ({"s": s} for s in (7, 8))) == [{"x": 1, "s": 7}, {"x": 2, "s": 8}]
    assert product(grid(x=[1, 2]), [{"mesh": "fine"}]) == [{"x": 1, "mesh": "fine"}, {"x": 2, "mesh": "fine"}]
    assert concat() == [] and concat(grid(a=[1])) == [{"a": 1}]


def test_builders_return_new_dicts_and_leave_arguments_alone():
    space = grid(a=[1, 2])
    copy = [dict(s) for s in space]
    for result in (product(space), zip_(space), concat(space), unique(space), difference(space, []),
                   missing(space, [])):
        assert result == copy and all(new is not old for new, old in zip(result, space))
        result[0]["a"] = 99
    assert space == copy


def test_samples_become_runs():
    space = product(together(a=[1, 2], b=["xx", "yy"]), grid(c=[np.float64(0.5), None]))
    assert [Run(sample).sample for sample in space] == space


BAD = [
    (lambda: grid(), SpecError, "grid: give at least one name=[values, ...]"),
    (lambda: grid(x=5), SpecTypeError, "grid: x: expected a list of values, got 5"),
    (lambda: grid(x="abc"), SpecTypeError, "grid: x: expected a list of values, got 'abc'"),
    (lambda: grid(x={1, 2}), SpecTypeError, "grid: x: expected a list of values (a set has no order"),
    (lambda: grid(x={"a": 1}), SpecTypeError, "grid: x: expected a list of values, got {'a': 1}"),
    (lambda: grid(x=np.zeros((2, 2))), SpecTypeError, "grid: x: expected a list of values"),
    (lambda: grid(x=[]), SpecError, "grid: x: must hold at least one value, got []"),
    (lambda: together(a=[1, 2], b=[1]), SpecError, "together: values that vary together need the same length; "
                                                   "a has 2, b has 1"),
    (lambda: together(a=7), SpecTypeError, "together: a: expected a list of values, got 7"),
    (lambda: product(), SpecError, "product: give at least one space"),
    (lambda: product(grid(a=[1]), 5), SpecTypeError, "product: spaces[1]: expected a list of samples (dicts), got 5"),
    (lambda: product(grid(a=[1]), {"b": 1}), SpecTypeError, "product: spaces[1]: expected a list of samples"),
    (lambda: product(grid(a=[1]), [5]), SpecTypeError, "product: spaces[1][0]: expected a sample (a dict of labels"),
    (lambda: product([{1: 2}]), SpecTypeError, "product: spaces[0][0]: a parameter name must be a string, got 1"),
    (lambda: product(grid(a=[1]), grid(a=[3])), SpecError, "product: label 'a' is in two of the combined spaces "
                                                           "(values 1 and 3)"),
    (lambda: zip_(grid(a=[1, 2]), grid(b=[1])), SpecError, "zip_: values that vary together need the same length; "
                                                           "spaces[0] has 2, spaces[1] has 1"),
    (lambda: zip_(grid(a=[1]), grid(a=[2])), SpecError, "zip_: label 'a' is in two of the combined spaces"),
    (lambda: concat(grid(a=[1]), "ab"), SpecTypeError, "concat: spaces[1]: expected a list of samples (dicts), got 'ab'"),
    (lambda: difference(grid(a=[1]), [{"c": 1}]), SpecError, "difference: remove[0]: label 'c' is in no sample of "
                                                             "space, got {'c': 1}"),
    (lambda: difference(5, []), SpecTypeError, "difference: space: expected a list of samples (dicts), got 5"),
    (lambda: missing(grid(a=[1]), [{"b": 1}]), SpecError, "missing: label 'a' of space sample {'a': 1} is in no "
                                                          "sample of done"),
    (lambda: missing(grid(a=[1]), [None]), SpecTypeError, "missing: done[0]: expected a sample"),
    (lambda: unique(3), SpecTypeError, "unique: space: expected a list of samples (dicts), got 3"),
    (lambda: missing(grid(a=[1]), pd.DataFrame({"a": [1]})), SpecTypeError,
     "missing: done: expected a list of samples (dicts), got a DataFrame; pass frame.to_dict('records')"),
]


@pytest.mark.parametrize("call, error, message", BAD)
def test_bad_input_names_function_argument_and_value(call, error, message):
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value)


# -- run directory names -------------------------------------------------------------------------------------------------
def test_dir_name_writes_values_stably_and_escapes_what_a_path_cannot_hold():
    assert dir_name({"z": 0.1, "a": 1e-5, "b": True, "c": None, "n": -3}) == "a=1e-05_b=True_c=None_n=-3_z=0.1"
    assert dir_name({"case": "a/b c", "max_iter": 100}) == "case=a%2Fb%20c_max_iter=100"
    assert dir_name({"v": "x_y=z%"}) == "v=x%5Fy%3Dz%25"
    assert dir_name({"shape": [1, 2], "é": "ü"}) == "shape=%5B1,2%5D_%C3%A9=%C3%BC"
    assert dir_name({"x": np.float64(0.5), "n": np.arange(2)}) == "n=%5B0,1%5D_x=0.5"
    assert dir_name({"b": 2, "a": 1}, keys=["b", "a"]) == "b=2_a=1"


def test_dir_names_of_a_grid_are_distinct():
    space = grid(a=["x", "x_b=1", "x y", "x%20y"], b=[1, "1_a=x"])
    names = [dir_name(sample) for sample in space]
    assert len(set(names)) == len(names) and not any("/" in name for name in names)


def test_dir_name_as_run_dir_names_label(workdir):
    space = [{**sample, "name": dir_name(sample)} for sample in grid(nx=[50, 100], re=[100])]
    ens = Ensemble.create(application=shutil.which("true"), runs=[Run(s) for s in space], setup_dir="s.ens",
                          app_is_batch_script=False, run_dir_names="runs/{name}")
    assert [Path(path).relative_to(workdir) for _, path in ens.run_dirs(nonexistent=True)] == [
        Path("runs/nx=50_re=100"), Path("runs/nx=100_re=100")]
    ens.close()


@pytest.mark.parametrize("call, error, message", [
    (lambda: dir_name(5), SpecTypeError, "dir_name: sample: expected a sample (a dict of labels to values), got 5"),
    (lambda: dir_name({"x": 1}, keys=["y"]), SpecError, "dir_name: keys: 'y' is not a label of the sample {'x': 1}"),
    (lambda: dir_name({"x": 1}, keys="x"), SpecTypeError, "dir_name: keys: expected a list of labels, got 'x'"),
    (lambda: dir_name({"x": 1}, ignore="x"), SpecTypeError, "dir_name: ignore: expected a list of labels, got 'x'"),
    (lambda: dir_name({"x": 1}, ignore=["x"]), SpecError, "dir_name: no labels left to name the sample {'x': 1}"),
    (lambda: dir_name({"x": 1}, rename={"y": "Y"}), SpecError, "dir_name: rename: 'y' is not a label"),
    (lambda: dir_name({"x": 1}, rename=["x"]), SpecTypeError, "dir_name: rename: expected a dict of label: name"),
    (lambda: dir_name({"x": 1}, rename={"x": ""}), SpecError, "dir_name: rename['x']: a parameter name must not be"),
    (lambda: dir_name({"x": "y" * 300}), SpecError, "is 302 bytes, more than the 255 a file name may have"),
    (lambda: dir_name({"x": [object()]}), SpecTypeError, "dir_name: cannot write [<object object"),
])
def test_dir_name_refuses_bad_input(call, error, message):
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value)

"""Validation of Step, CompositeRun and Run: every field, both error kinds."""
from __future__ import annotations

import json
import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from ensemble import CompositeRun, Run, SpecError, SpecTypeError, Step
from ensemble.spec import MAX_SAMPLE_BYTES


# -- Step ---------------------------------------------------------------------------------------------------------
def test_step_defaults_and_string_args_are_split():
    step = Step("/bin/bash -c 'exit 1;'")
    assert step.args == ("/bin/bash", "-c", "exit 1;")
    assert (step.tasks, step.cores_per_task, step.gpus_per_task) == (1, 1, 0)
    assert step.timeout == 0.0 and isinstance(step.timeout, float)
    assert step.batch_script is True
    assert step.cwd == "."


def test_step_list_args_paths_and_numbers_become_strings():
    step = Step([Path("/bin/echo"), "-n", 3, 2.5], tasks=4, cores_per_task=2, gpus_per_task=1, cwd=Path("sub"))
    assert step.args == ("/bin/echo", "-n", "3", "2.5")
    assert step.cwd == "sub"
    assert step.cores == 8
    assert step.gpus == 4


def test_step_round_trips_through_dict():
    step = Step(["/bin/echo", "a"], tasks=2, timeout=1.5, batch_script=False, cwd="x")
    data = step.to_dict()
    assert data == {"args": ["/bin/echo", "a"], "tasks": 2, "cores_per_task": 1, "gpus_per_task": 0,
                    "timeout": 1.5, "batch_script": False, "cwd": "x"}
    assert json.loads(json.dumps(data)) == data
    assert Step.from_dict(data) == step
    assert list(data) == [f.name for f in fields(Step)], "every field, in order"


@pytest.mark.parametrize(
    ("kwargs", "kind", "fragments"),
    [
        ({"args": 5}, SpecTypeError, ["Step.args", "5"]),
        ({"args": None}, SpecTypeError, ["Step.args", "None"]),
        ({"args": {"a": 1}}, SpecTypeError, ["Step.args", "{'a': 1}"]),
        ({"args": b"/bin/echo"}, SpecTypeError, ["Step.args", "b'/bin/echo'"]),
        ({"args": ["/bin/echo", None]}, SpecTypeError, ["Step.args[1]", "None"]),
        ({"args": ["/bin/echo", True]}, SpecTypeError, ["Step.args[1]", "True"]),
        ({"args": [object()]}, SpecTypeError, ["Step.args[0]", "object"]),
        ({"args": ""}, SpecError, ["Step.args", "''"]),
        ({"args": "   "}, SpecError, ["Step.args", "'   '"]),
        ({"args": []}, SpecError, ["Step.args", "[]"]),
        ({"args": ["", "x"]}, SpecError, ["Step.args", "['', 'x']"]),
        ({"args": "/bin/echo 'unclosed"}, SpecError, ["Step.args", "unclosed"]),
        ({"tasks": "2"}, SpecTypeError, ["Step.tasks", "'2'"]),
        ({"tasks": 1.5}, SpecTypeError, ["Step.tasks", "1.5"]),
        ({"tasks": True}, SpecTypeError, ["Step.tasks", "True"]),
        ({"tasks": None}, SpecTypeError, ["Step.tasks", "None"]),
        ({"tasks": 0}, SpecError, ["Step.tasks", ">= 1", "0"]),
        ({"tasks": -3}, SpecError, ["Step.tasks", "-3"]),
        ({"cores_per_task": "4"}, SpecTypeError, ["Step.cores_per_task", "'4'"]),
        ({"cores_per_task": 0}, SpecError, ["Step.cores_per_task", "0"]),
        ({"cores_per_task": -1}, SpecError, ["Step.cores_per_task", "-1"]),
        ({"gpus_per_task": 1.0}, SpecTypeError, ["Step.gpus_per_task", "1.0"]),
        ({"gpus_per_task": -1}, SpecError, ["Step.gpus_per_task", ">= 0", "-1"]),
        ({"tasks": np.bool_(True)}, SpecTypeError, ["Step.tasks", "True"]),
        ({"timeout": "5"}, SpecTypeError, ["Step.timeout", "'5'"]),
        ({"timeout": None}, SpecTypeError, ["Step.timeout", "None"]),
        ({"timeout": False}, SpecTypeError, ["Step.timeout", "False"]),
        ({"timeout": -1}, SpecError, ["Step.timeout", "-1"]),
        ({"timeout": -0.5}, SpecError, ["Step.timeout", "-0.5"]),
        ({"timeout": math.inf}, SpecError, ["Step.timeout", "inf"]),
        ({"timeout": math.nan}, SpecError, ["Step.timeout", "nan"]),
        ({"batch_script": 1}, SpecTypeError, ["Step.batch_script", "1"]),
        ({"batch_script": "yes"}, SpecTypeError, ["Step.batch_script", "'yes'"]),
        ({"batch_script": None}, SpecTypeError, ["Step.batch_script", "None"]),
        ({"cwd": 5}, SpecTypeError, ["Step.cwd", "5"]),
        ({"cwd": None}, SpecTypeError, ["Step.cwd", "None"]),
        ({"cwd": ""}, SpecError, ["Step.cwd", "''"]),
    ],
)
def test_step_rejects_bad_fields(kwargs, kind, fragments):
    kwargs = {"args": ["/bin/echo"], **kwargs}
    with pytest.raises(kind) as info:
        Step(**kwargs)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message
    # the two kinds are distinct: a type problem is not a ValueError and vice versa
    other = ValueError if kind is SpecTypeError else TypeError
    assert not isinstance(info.value, other)


def test_step_accepts_numpy_like_values():
    step = Step(["/bin/echo", np.int64(7), np.float64(0.5)], tasks=np.int64(4), cores_per_task=np.int32(2),
                gpus_per_task=np.uint8(1), timeout=np.int64(3))
    assert step.args == ("/bin/echo", "7", "0.5")
    assert (step.tasks, step.cores_per_task, step.gpus_per_task) == (4, 2, 1)
    assert all(type(v) is int for v in (step.tasks, step.cores_per_task, step.gpus_per_task))
    assert step.timeout == 3.0 and type(step.timeout) is float
    assert Step(["/bin/echo"], timeout=np.float32(1.5)).timeout == 1.5
    json.dumps(step.to_dict())


def test_step_numpy_values_are_still_range_checked():
    with pytest.raises(SpecError, match="Step.tasks"):
        Step(["/bin/echo"], tasks=np.int64(0))
    with pytest.raises(SpecError, match="Step.timeout"):
        Step(["/bin/echo"], timeout=np.float64(-2.0))


def test_step_is_frozen():
    step = Step(["/bin/echo"])
    with pytest.raises(AttributeError):
        step.tasks = 3


# -- CompositeRun -------------------------------------------------------------------------------------------------
def test_composite_run_normalises_sample_and_steps():
    steps = [Step(["/bin/echo", "1"]), Step(["/bin/echo", "2"])]
    run = CompositeRun({"a": 1, "b": "x", "c": [1, 2.5], "d": {"e": None}}, steps)
    assert run.sample == {"a": 1, "b": "x", "c": [1, 2.5], "d": {"e": None}}
    assert run.steps == tuple(steps)
    assert json.loads(run.steps_json()) == [s.to_dict() for s in steps]


def test_composite_run_sample_is_a_copy():
    sample = {"a": [1]}
    run = CompositeRun(sample, [Step("/bin/echo")])
    sample["a"].append(2)
    sample["b"] = 3
    assert run.sample == {"a": [1]}


def test_composite_run_none_sample_is_empty():
    assert CompositeRun(None, [Step("/bin/echo")]).sample == {}


def test_composite_run_accepts_numpy_like_values():
    class Vector:
        def tolist(self):
            return [1, 2, 3]

    class Scalar:
        def item(self):
            return 4.5

    sample = {"i": np.int64(3), "f": np.float32(1.5), "b": np.bool_(True), "arr": np.arange(3),
              "mat": np.array([[1.0, 2.0]]), "vec": Vector(), "scalar": Scalar()}
    run = CompositeRun(sample, [Step("/bin/echo")])
    assert run.sample == {"i": 3, "f": 1.5, "b": True, "arr": [0, 1, 2], "mat": [[1.0, 2.0]],
                          "vec": [1, 2, 3], "scalar": 4.5}
    assert type(run.sample["i"]) is int
    assert type(run.sample["b"]) is bool


@pytest.mark.parametrize(
    ("sample", "kind", "fragments"),
    [
        ([1, 2], SpecTypeError, ["CompositeRun.sample", "[1, 2]"]),
        ("a=1", SpecTypeError, ["CompositeRun.sample", "'a=1'"]),
        (5, SpecTypeError, ["CompositeRun.sample", "5"]),
        ({1: "a"}, SpecTypeError, ["CompositeRun.sample", "labels must be strings", "1"]),
        ({("a", "b"): 1}, SpecTypeError, ["CompositeRun.sample", "('a', 'b')"]),
        ({"a": object()}, SpecTypeError, ["CompositeRun.sample", "object", "not JSON"]),
        ({"a": {1, 2}}, SpecTypeError, ["CompositeRun.sample", "{1, 2}", "set"]),
        ({"a": frozenset()}, SpecTypeError, ["CompositeRun.sample", "frozenset"]),
        ({"a": b"bytes"}, SpecTypeError, ["CompositeRun.sample", "b'bytes'"]),
        ({"a": {"nested": Path("/x")}}, SpecTypeError, ["CompositeRun.sample", "PosixPath"]),
        ({"a": {(1, 2): 3}}, SpecTypeError, ["CompositeRun.sample"]),
        ({"a": "x" * (MAX_SAMPLE_BYTES + 1)}, SpecError, ["CompositeRun.sample", str(MAX_SAMPLE_BYTES)]),
    ],
)
def test_composite_run_rejects_bad_samples(sample, kind, fragments):
    with pytest.raises(kind) as info:
        CompositeRun(sample, [Step("/bin/echo")])
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("steps", "kind", "fragments"),
    [
        ([], SpecError, ["CompositeRun.steps", "at least one Step"]),
        ((), SpecError, ["CompositeRun.steps", "empty"]),
        (None, SpecTypeError, ["CompositeRun.steps", "None"]),
        ("/bin/echo", SpecTypeError, ["CompositeRun.steps", "'/bin/echo'"]),
        (5, SpecTypeError, ["CompositeRun.steps", "5"]),
        ({Step("/bin/echo")}, SpecTypeError, ["CompositeRun.steps"]),
        ([Step("/bin/echo"), "/bin/ls"], SpecTypeError, ["CompositeRun.steps[1]", "'/bin/ls'"]),
        ([{"args": ["/bin/echo"]}], SpecTypeError, ["CompositeRun.steps[0]", "{'args': ['/bin/echo']}"]),
    ],
)
def test_composite_run_rejects_bad_steps(steps, kind, fragments):
    with pytest.raises(kind) as info:
        CompositeRun({"a": 1}, steps)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_composite_run_requires_steps():
    with pytest.raises(SpecError, match="CompositeRun.steps"):
        CompositeRun({"a": 1})


def test_step_error_surfaces_before_composite_run():
    with pytest.raises(SpecError, match="Step.tasks"):
        CompositeRun({"a": 1}, [Step("/bin/echo", tasks=0)])


# -- Run ----------------------------------------------------------------------------------------------------------
def test_run_defaults():
    run = Run()
    assert run.sample == {}
    assert run.args == ()
    assert (run.tasks, run.cores_per_task, run.gpus_per_task, run.timeout) == (1, 1, 0, 0.0)


def test_run_string_and_list_args():
    assert Run({"x": 1}, "-x 1 --name 'a b'").args == ("-x", "1", "--name", "a b")
    assert Run({"x": 1}, ["-x", 1]).args == ("-x", "1")
    assert Run(args="").args == ()


def test_run_to_composite_prepends_application():
    run = Run({"x": np.int64(2)}, ["-v"], tasks=2, cores_per_task=3, gpus_per_task=1, timeout=2.5)
    composite = run.to_composite("/bin/app", batch_script=False)
    assert composite.sample == {"x": 2}
    (step,) = composite.steps
    assert step == Step(["/bin/app", "-v"], tasks=2, cores_per_task=3, gpus_per_task=1, timeout=2.5,
                        batch_script=False)


@pytest.mark.parametrize(
    ("kwargs", "kind", "fragments"),
    [
        ({"sample": [("a", 1)]}, SpecTypeError, ["Run.sample", "[('a', 1)]"]),
        ({"sample": {2: 1}}, SpecTypeError, ["Run.sample", "2"]),
        ({"sample": {"a": object()}}, SpecTypeError, ["Run.sample", "object"]),
        ({"sample": {"a": {1}}}, SpecTypeError, ["Run.sample", "{1}"]),
        ({"args": 5}, SpecTypeError, ["Run.args", "5"]),
        ({"args": [None]}, SpecTypeError, ["Run.args[0]", "None"]),
        ({"args": "'open"}, SpecError, ["Run.args", "'open"]),
        ({"tasks": "1"}, SpecTypeError, ["Run.tasks", "'1'"]),
        ({"tasks": 0}, SpecError, ["Run.tasks", "0"]),
        ({"cores_per_task": -2}, SpecError, ["Run.cores_per_task", "-2"]),
        ({"cores_per_task": 2.0}, SpecTypeError, ["Run.cores_per_task", "2.0"]),
        ({"gpus_per_task": -1}, SpecError, ["Run.gpus_per_task", "-1"]),
        ({"gpus_per_task": "1"}, SpecTypeError, ["Run.gpus_per_task", "'1'"]),
        ({"timeout": -5}, SpecError, ["Run.timeout", "-5"]),
        ({"timeout": "1h"}, SpecTypeError, ["Run.timeout", "'1h'"]),
    ],
)
def test_run_rejects_bad_fields(kwargs, kind, fragments):
    with pytest.raises(kind) as info:
        Run(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_error_kinds_are_builtin_value_and_type_errors():
    with pytest.raises(ValueError):
        Run(tasks=0)
    with pytest.raises(TypeError):
        Run(tasks="x")

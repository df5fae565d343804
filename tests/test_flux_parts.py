"""Flux pieces that need no Flux: the exact jobspecs, eventlogs mapped to exit codes, and the
error when flux-python is missing.  (No flux-core can be installed here: see docs/hpc.rst.)"""
from __future__ import annotations

import json
import signal
import sys
import types

import pytest

from ensemble.errors import EnsembleError
from ensemble.flux.bindings import import_flux
from ensemble.flux.jobspec import duration_of, jobspec
from ensemble.flux.results import JobEnd, code_of_wait_status, job_end

ENV = {"PATH": "/usr/bin", "ENSEMBLE_RUN_ID": "7"}


def test_one_task_jobspec_is_exact():
    spec = jobspec(["app", "-v"], 1, 1, 0, 0, "/r/7", ENV, "/r/7/o", "/r/7/e")
    assert spec == {
        "version": 1,
        "resources": [{"type": "slot", "count": 1, "label": "task", "with": [{"type": "core", "count": 1}]}],
        "tasks": [{"command": ["app", "-v"], "slot": "task", "count": {"per_slot": 1}}],
        "attributes": {"system": {
            "duration": 0.0, "cwd": "/r/7", "environment": ENV,
            "shell": {"options": {"output": {"stdout": {"type": "file", "path": "/r/7/o"},
                                             "stderr": {"type": "file", "path": "/r/7/e"}}}}}},
    }
    assert json.loads(json.dumps(spec)) == spec, "plain JSON"


def test_tasks_cores_gpus_and_timeout():
    spec = jobspec(["app"], 4, 3, 1, 2.5, "/r", {}, "/r/o", "/r/e")
    assert spec["resources"] == [{"type": "slot", "count": 4, "label": "task",
                                  "with": [{"type": "core", "count": 3}, {"type": "gpu", "count": 1}]}]
    assert spec["attributes"]["system"]["duration"] == 150 + 60, "the manager's timeout acts first"


def test_nodes_even_and_uneven():
    even = jobspec(["app"], 4, 1, 0, 0, "/r", {}, "/r/o", "/r/e", nodes=2)
    assert even["resources"] == [{"type": "node", "count": 2, "with": [
        {"type": "slot", "count": 2, "label": "task", "with": [{"type": "core", "count": 1}]}]}]
    assert even["tasks"][0]["count"] == {"per_slot": 1}
    uneven = jobspec(["app"], 5, 1, 0, 0, "/r", {}, "/r/o", "/r/e", nodes=2)
    assert uneven["resources"][0]["with"][0]["count"] == 3
    assert uneven["tasks"][0]["count"] == {"total": 5}


def test_duration_rounds_up_to_whole_seconds():
    assert duration_of(0) == 0.0
    assert duration_of(0.01) == 1 + 60


def ev(name: str, **context) -> dict:
    return {"name": name, "context": context}


@pytest.mark.parametrize("events, expected", [
    ([ev("submit"), ev("alloc"), ev("start"), ev("finish", status=0)], JobEnd(0)),
    ([ev("start"), ev("finish", status=3 << 8)], JobEnd(3)),
    ([ev("start"), ev("finish", status=signal.SIGTERM)], JobEnd(-signal.SIGTERM)),
    ([ev("start"), ev("exception", type="timeout", severity=0, note="resource allocation expired"),
      ev("finish", status=signal.SIGKILL)], JobEnd(-signal.SIGKILL)),
    ([ev("start"), ev("exception", type="timeout", severity=0), ev("finish", status=0)], JobEnd(-signal.SIGALRM)),
    ([ev("submit"), ev("exception", type="cancel", severity=0), ev("clean")], JobEnd(-signal.SIGKILL)),
    ([ev("submit"), ev("exception", type="alloc", severity=0, note="unsatisfiable request"), ev("clean")],
     JobEnd(-signal.SIGKILL, "flux alloc: unsatisfiable request")),
    ([ev("submit"), ev("alloc"), ev("start")], None),
])
def test_eventlogs_end_as_exit_codes(events, expected):
    assert job_end(events) == expected


def test_wait_status():
    assert code_of_wait_status(0) == 0 and code_of_wait_status(1 << 8) == 1
    assert code_of_wait_status(signal.SIGKILL) == -signal.SIGKILL


def test_missing_flux_python_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "flux", None)  # as if not installed (None makes import fail)
    with pytest.raises(EnsembleError, match="use_flux: the flux-python bindings are not installed"):
        import_flux()


def test_a_shadowing_flux_package_is_named(monkeypatch):
    impostor = types.ModuleType("flux")
    impostor.__file__ = "/site-packages/flux/__init__.py"
    monkeypatch.setitem(sys.modules, "flux", impostor)
    monkeypatch.setitem(sys.modules, "flux.job", types.ModuleType("flux.job"))
    with pytest.raises(EnsembleError, match="is not flux-python .*pip uninstall flux-core"):
        import_flux()


def test_ensemble_imports_without_flux():
    assert "flux" not in sys.modules or sys.modules["flux"] is None
    import ensemble  # noqa: F401
    import ensemble.flux.jobspec  # noqa: F401
    assert "flux" not in sys.modules

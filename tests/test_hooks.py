"""Application-interface hooks called through the Ensemble API."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ensemble import Ensemble, HookError, Run

INTERFACE = '''
import json, os

def prep_ensemble(setup_dir):
    with open("prep_ensemble.json", "w") as f:
        json.dump({"setup_dir": setup_dir, "cwd": os.getcwd(), "env": os.environ.get("ENSEMBLE_SETUP_DIR")}, f)
    return "prepped"

def post_ensemble():
    return {"cwd": os.getcwd()}

def post_run(sample, run_id):
    with open("post_run.txt", "w") as f:
        f.write(f"{run_id} {sample['x']}")
    return {"run_id": run_id, "sample": sample, "cwd": os.getcwd(),
            "env": [os.environ.get("ENSEMBLE_RUN_ID"), os.environ.get("ENSEMBLE_RUN_DIR"),
                    json.loads(os.environ.get("ENSEMBLE_SAMPLE", "null"))]}
'''


def make(workdir: Path, interface: str | None, **kwargs) -> Ensemble:
    if interface is not None:
        (workdir / "iface.py").write_text(interface)
        kwargs["app_interface"] = "iface.py"
    return Ensemble.create(application="/bin/true", app_is_batch_script=False,
                           runs=[Run({"x": 10}), Run({"x": 20})], **kwargs)


def test_call_prep_ensemble(workdir):
    with make(workdir, INTERFACE) as ens:
        assert ens.call_prep_ensemble() == "prepped"
        setup = str(ens.setup_dir)
    data = json.loads((workdir / "prep_ensemble.json").read_text())
    assert data == {"setup_dir": setup, "cwd": str(workdir), "env": setup}
    assert "ENSEMBLE_SETUP_DIR" not in os.environ


def test_call_post_ensemble(workdir):
    with make(workdir, INTERFACE) as ens:
        assert ens.call_post_ensemble() == {"cwd": str(workdir)}


def test_call_post_run_in_run_dir_with_parameters_by_name(workdir):
    with make(workdir, INTERFACE) as ens:
        value = ens.call_post_run(2)
    run_dir = workdir / "runs" / "2"
    assert value == {"run_id": 2, "sample": {"x": 20}, "cwd": str(run_dir),
                     "env": ["2", str(run_dir), {"x": 20}]}
    assert (run_dir / "post_run.txt").read_text() == "2 20"
    assert not (workdir / "runs" / "1").exists()
    assert Path.cwd() == workdir
    for key in ("ENSEMBLE_RUN_ID", "ENSEMBLE_RUN_DIR", "ENSEMBLE_SAMPLE"):
        assert key not in os.environ


def test_hook_with_var_keywords_receives_everything(workdir):
    with make(workdir, "def post_run(**kw):\n    return sorted(kw.items())\n") as ens:
        value = ens.call_post_run(1)
        setup = str(ens.setup_dir)
    assert value == [("run_dir", str(workdir / "runs" / "1")), ("run_id", 1), ("sample", {"x": 10}),
                     ("setup_dir", setup)]


def test_hook_without_parameters(workdir):
    with make(workdir, "def post_run():\n    return 'none needed'\n") as ens:
        assert ens.call_post_run(1) == "none needed"


def test_missing_hooks_return_none(workdir):
    with make(workdir, "X = 1\n") as ens:
        assert ens.call_prep_ensemble() is None
        assert ens.call_post_ensemble() is None
        assert ens.call_post_run(1) is None


def test_no_interface_returns_none(workdir):
    with make(workdir, None) as ens:
        assert ens.call_prep_ensemble() is None
        assert ens.call_post_ensemble() is None
        assert ens.call_post_run(2) is None


def test_failing_hook_propagates_and_restores_cwd(workdir):
    with make(workdir, "def post_run():\n    raise ZeroDivisionError('boom')\n") as ens, \
            pytest.raises(ZeroDivisionError, match="boom"):
        ens.call_post_run(1)
    assert Path.cwd() == workdir
    assert "ENSEMBLE_RUN_ID" not in os.environ


def test_interface_is_read_at_call_time(workdir):
    with make(workdir, "def post_ensemble():\n    return 1\n") as ens:
        assert ens.call_post_ensemble() == 1
        (workdir / "iface.py").write_text("def post_ensemble():\n    return 222\n")
        assert ens.call_post_ensemble() == 222


def test_edited_interface_never_runs_stale_bytecode(workdir, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    iface = workdir / "iface.py"
    with make(workdir, "def post_ensemble():\n    return 1\n") as ens:
        assert ens.call_post_ensemble() == 1
        stamp = iface.stat()
        iface.write_text("def post_ensemble():\n    return 2\n")  # same size ...
        os.utime(iface, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # ... and same modification time
        assert ens.call_post_ensemble() == 2
    assert not (workdir / "__pycache__").exists()


def test_interface_broken_after_create_reports_traceback(workdir):
    with make(workdir, "def post_run():\n    return 1\n") as ens:
        (workdir / "iface.py").write_text("def post_run(:\n")
        with pytest.raises(HookError) as info:
            ens.call_post_run(1)
    message = str(info.value)
    assert "app_interface" in message and str(workdir / "iface.py") in message and "SyntaxError" in message

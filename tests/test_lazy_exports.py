"""The executor, provider and launcher packages import a kind's module only when it is used."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

PACKAGES = ("ensemble.executors", "ensemble.providers", "ensemble.launchers")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_is_the_class_of_its_module(name):
    package = importlib.import_module(name)
    for export, module in package.WHERE.items():
        assert getattr(package, export) is getattr(importlib.import_module(f"{name}.{module}"), export)
        assert export in dir(package)
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        package.Nothing  # noqa: B018 - the attribute access is the test


def test_a_local_manager_loads_no_other_kind(tmp_path):
    (tmp_path / "s.csv").write_text("x\n1\n")
    code = """
import json, sys
from ensemble.cli import main
assert main(["--setup-dir", "setup", "create", "s.csv", "--application", "/bin/true", "--no-batch-script"]) == 0
assert main(["--setup-dir", "setup", "execute", "--block", "--quiet"]) == 0
print(json.dumps(sorted(m for m in sys.modules if m.startswith("ensemble."))))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert {"ensemble.executors.spawner", "ensemble.launchers.local", "ensemble.providers.local"} <= loaded
    others = {"ensemble.executors.srun", "ensemble.executors.worker", "ensemble.flux.executor", "ensemble.flux.instance",
              "ensemble.launchers.srun", "ensemble.launchers.mpirun", "ensemble.launchers.lsf", "ensemble.launchers.flux",
              "ensemble.providers.lsf", "ensemble.alloc.routing"}
    assert loaded & others == set()

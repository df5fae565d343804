"""Provenance recorded at create and shown by ``ensemble info``."""
from __future__ import annotations

import getpass
import json
import socket
import subprocess
import sys

from engine_helpers import create, run, sh

from ensemble import __version__
from ensemble.cli.info import info, lines


def git(cwd, *argv: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *argv], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_provenance_of_an_ensemble_created_in_a_dirty_git_repository(edir):
    git(edir, "init", "-q")
    (edir / "driver.py").write_text("print('v1')\n")
    git(edir, "add", "driver.py")
    git(edir, "commit", "-qm", "first")
    commit = git(edir, "rev-parse", "HEAD")
    (edir / "driver.py").write_text("print('v2')\n")
    ens = create([run(0, sh("true"))])
    prov = ens.store.get_meta("provenance")
    assert prov["user"] == getpass.getuser() and prov["host"] == socket.gethostname()
    assert prov["git"] == {"commit": commit, "dirty": True, "root": str(edir)}
    assert prov["packages"]["ensemble"] == __version__
    assert prov["python"] == sys.version.split()[0] and prov["command"] == sys.argv
    text = "\n".join(lines(info(ens)))
    assert f"git {commit[:12]} of {edir}, uncommitted changes" in text
    assert "runs:            queued 1, success 0" in text


def test_outside_a_repository_the_git_fields_are_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    ens = create([run(0, sh("true"))])
    assert ens.store.get_meta("provenance")["git"] == {"commit": None, "dirty": None, "root": None}
    assert "(not in a git repository)" in "\n".join(lines(info(ens)))


def test_info_json_from_the_command_line(edir):
    create([run(0, sh("true"))]).close()
    done = subprocess.run([sys.executable, "-m", "ensemble", "--setup-dir", "setup", "info", "--json"],
                          capture_output=True, text=True, check=True)
    data = json.loads(done.stdout)
    assert data["setup_dir"] == str(edir / "setup") and data["runs"]["total"] == 1
    assert data["options"]["result_file"] == "ensemble_result.json"
    assert data["provenance"]["cwd"] == str(edir)


def test_package_versions_are_those_importlib_metadata_reports():
    import importlib.metadata

    from ensemble.setup import provenance

    expected = {}
    for name in provenance.PACKAGES:
        try:
            expected[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    assert provenance._versions() == expected
    assert "ensemble" in expected and "pandas" in expected


def test_package_versions_come_from_the_first_entry_on_the_path_and_legacy_egg_info(tmp_path, monkeypatch):
    from ensemble.setup import provenance

    first, second = tmp_path / "first", tmp_path / "second"
    (first / "Fake_Pkg-2.0.1.dist-info").mkdir(parents=True)
    (second / "fake_pkg-1.0.dist-info").mkdir(parents=True)
    legacy = second / "old.pkg.egg-info"
    legacy.mkdir()
    (legacy / "PKG-INFO").write_text("Metadata-Version: 1.1\nName: old.pkg\nVersion: 0.9.4\n")
    (second / "absent_pkg.egg-info").mkdir()  # no metadata, so no version: left out
    monkeypatch.setattr(provenance, "PACKAGES", ("fake-pkg", "old-pkg", "absent-pkg", "not-installed"))
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(first), str(second)])
    assert provenance._versions() == {"fake-pkg": "2.0.1", "old-pkg": "0.9.4"}

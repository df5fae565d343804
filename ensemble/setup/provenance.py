"""Where an ensemble came from: who created it, where, with what, from which code.

Recorded once at create (meta ``provenance``) and shown by ``ensemble info``.  Every probe is
cheap and none can fail the create: a missing ``git`` or a directory outside a repository
gives ``None`` for the git fields.
"""
from __future__ import annotations

import getpass
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Packages whose versions are recorded (those not installed are left out).
PACKAGES = ("ensemble", "pandas", "numpy", "PyYAML", "scipy", "mpi4py", "flux-python", "jinja2")
GIT_TIMEOUT = 5.0
#: How the directories holding an installed project's metadata end.
METADATA_DIRS = (".dist-info", ".egg-info")


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _normal(project: str) -> str:
    """A project name as the packaging specifications compare them (``PyYAML`` is ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", project).lower()


def _versions() -> dict[str, str]:
    """The installed versions of :data:`PACKAGES`, the first found along ``sys.path`` as ``import`` finds them.

    An installed project's metadata lives in a directory named ``{name}-{version}.dist-info`` (the
    packaging specification's "Recording installed projects"), so one listing of each ``sys.path``
    entry gives every version: about 1 ms, where ``importlib.metadata`` takes 20 (it imports the
    e-mail parser and parses each METADATA file).  A project found only as a legacy ``.egg-info``,
    whose name need not carry the version, is asked of ``importlib.metadata``.
    """
    wanted = {_normal(name): name for name in PACKAGES}
    found: dict[str, str] = {}
    legacy: list[str] = []
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            if not item.endswith(METADATA_DIRS):
                continue
            stem, _, kind = item.rpartition(".")
            project, _, version = stem.partition("-")
            name = wanted.get(_normal(project))
            if name is None or name in found or name in legacy:
                continue
            if kind == "dist-info" and version:
                found[name] = version
            elif kind == "egg-info":
                legacy.append(name)
    found.update(_metadata_versions(legacy))
    return {name: found[name] for name in PACKAGES if name in found}


def _metadata_versions(names: list[str]) -> dict[str, str]:
    if not names:
        return {}
    import importlib.metadata

    out = {}
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if version:
            out[name] = version
    return out


def _git(cwd: Path, *argv: str) -> str | None:
    try:
        done = subprocess.run(["git", *argv], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(cwd: Path) -> dict[str, Any]:
    """The commit of the repository holding ``cwd`` and whether its tree has uncommitted changes."""
    head = (_git(cwd, "rev-parse", "HEAD", "--show-toplevel") or "").splitlines()
    if len(head) != 2:
        return {"commit": None, "dirty": None, "root": None}
    status = _git(cwd, "status", "--porcelain", "--untracked-files=no")
    return {"commit": head[0], "dirty": None if status is None else bool(status), "root": head[1]}


def collect(cwd: Path) -> dict[str, Any]:
    """The provenance of an ensemble created now, from ``cwd``, by this process."""
    return {
        "user": _user(),
        "host": socket.gethostname(),
        "time": time.time(),
        "cwd": str(cwd),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "packages": _versions(),
        "git": git_state(cwd),
        "command": list(sys.argv),
    }

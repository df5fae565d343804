"""Where an ensemble came from: who created it, where, with what, from which code.

Recorded once at create (meta ``provenance``) and shown by ``ensemble info``.  Every probe is
cheap and none can fail the create: a missing ``git`` or a directory outside a repository
gives ``None`` for the git fields.
"""
from __future__ import annotations

import getpass
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: Packages whose versions are recorded (those not installed are left out).
PACKAGES = ("ensemble", "pandas", "numpy", "PyYAML", "scipy", "mpi4py", "flux-python", "jinja2")
GIT_TIMEOUT = 5.0


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _versions() -> dict[str, str]:
    import importlib.metadata  # 12 ms: only ``create`` asks

    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
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

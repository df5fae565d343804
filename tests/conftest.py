"""Shared fixtures and helpers for the ensemble test suite."""
from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from engine_helpers import engine_dir
from fault_helpers import fault_dir

from ensemble.store import DB_NAME

SETUP = ".ensemble_setup"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty current working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def edir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory for engine tests; managers and processes a test started are killed after it."""
    yield from engine_dir(tmp_path, monkeypatch)


@pytest.fixture
def fdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory for fault tests; managers (of any host name) and what they started are
    killed after it."""
    yield from fault_dir(tmp_path, monkeypatch)


def write_script(path: str | os.PathLike, text: str, mode: int = 0o755) -> Path:
    """Write ``text`` to ``path`` (parents created) and set its permission bits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture
def script(workdir: Path) -> Callable[..., Path]:
    """Factory writing an executable script relative to the working directory."""

    def make(name: str, text: str = "#!/bin/sh\nexit 0\n", mode: int = 0o755) -> Path:
        return write_script(workdir / name, text, mode)

    return make


def is_executable(path: str | os.PathLike) -> bool:
    return bool(Path(path).stat().st_mode & stat.S_IXUSR)


def snapshot(root: str | os.PathLike) -> dict[str, bytes | str | None]:
    """Every path under ``root`` mapped to its bytes (files), link target or None (directories)."""
    root = Path(root)
    if not root.exists():
        return {}
    tree: dict[str, bytes | str | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                tree[rel] = "->" + os.readlink(full)
            elif full.is_dir():
                tree[rel] = None
            else:
                tree[rel] = full.read_bytes()
    return tree


def db_path(setup_dir: str | os.PathLike = SETUP) -> Path:
    return Path(setup_dir) / DB_NAME


def sql(setup_dir: str | os.PathLike, query: str, params: tuple = ()) -> list[tuple]:
    """Run one statement on an ensemble's database with a separate connection and commit."""
    conn = sqlite3.connect(db_path(setup_dir))
    try:
        rows = conn.execute(query, params).fetchall()
        conn.commit()
    finally:
        conn.close()
    return rows


@pytest.fixture(scope="session")
def slurm_testbed():
    """The real Slurm testbed (started if needed; see ``tests/slurm_helpers.py``)."""
    from slurm_helpers import start_testbed

    return start_testbed()


@pytest.fixture
def slurm(slurm_testbed, monkeypatch: pytest.MonkeyPatch):
    """The testbed with ``SLURM_CONF`` set for this test's client commands."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_testbed.conf))
    return slurm_testbed

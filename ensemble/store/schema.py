"""The schema of an ensemble database, and where it lives (which journal its file system allows)."""
from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

SCHEMA_VERSION = 3
#: What turns a database of an older schema version into the next one (run in one transaction).
MIGRATIONS = {
    # 1 -> 2: the id the resource manager gave an attempt (a Flux job id), NULL for processes.
    1: ("ALTER TABLE attempts ADD COLUMN job TEXT",),
    # 2 -> 3: the hash of each run's sample (ensemble.spec.samplehash), computed for the runs there.
    2: ("ALTER TABLE runs ADD COLUMN sample_hash TEXT",
        "UPDATE runs SET sample_hash=ensemble_sample_hash(sample)",
        "CREATE INDEX runs_by_sample_hash ON runs(sample_hash)"),
}
DB_NAME = "ensemble.db"
BUSY_TIMEOUT_MS = 60_000
NETWORK_FS = {"nfs", "nfs4", "lustre", "gpfs", "cifs", "smb3", "smbfs", "beegfs", "fuse.sshfs", "ceph", "panfs", "9p"}

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE stepsets (id INTEGER PRIMARY KEY, steps TEXT NOT NULL UNIQUE);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    sample TEXT NOT NULL,
    stepset INTEGER NOT NULL REFERENCES stepsets(id),
    run_dir TEXT NOT NULL UNIQUE,
    status INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    restarts INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    claimed_by TEXT,
    message TEXT,
    sample_hash TEXT
);
CREATE INDEX runs_by_status ON runs(status, claimed_by);
CREATE INDEX runs_by_sample_hash ON runs(sample_hash);
CREATE TABLE attempts (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    manager TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER,
    start REAL NOT NULL,
    end REAL,
    exit_code INTEGER,
    signal INTEGER,
    outcome TEXT,
    command TEXT NOT NULL,
    placement TEXT,
    job TEXT
);
CREATE INDEX attempts_by_run ON attempts(run_id);
CREATE INDEX attempts_open ON attempts(manager) WHERE end IS NULL;
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    run_id INTEGER,
    kind TEXT NOT NULL,
    detail TEXT
);
CREATE TABLE leases (
    manager TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_start TEXT NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL,
    allow_multiple INTEGER NOT NULL
);
CREATE TABLE inbox_done (name TEXT PRIMARY KEY, time REAL NOT NULL);
"""


def filesystem_type(path: Path) -> str:
    """The type of the mount holding ``path`` (``''`` if unknown)."""
    best, fstype = "", ""
    target = str(path.resolve())
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                    best, fstype = mount, parts[2]
    except OSError:
        return ""
    return fstype


def journal_mode_for(directory: Path) -> str:
    """WAL on local file systems, the rollback journal on network ones.

    ``ENSEMBLE_JOURNAL_MODE=DELETE`` (or ``WAL``) forces a mode, e.g. for a file system
    this module does not recognise as networked.
    """
    forced = os.environ.get("ENSEMBLE_JOURNAL_MODE", "").upper()
    if forced in ("WAL", "DELETE"):
        return forced
    return "DELETE" if filesystem_type(directory) in NETWORK_FS else "WAL"


#: What a full file system (or an exhausted quota) looks like from SQLite and from the OS.
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_SQLITE_ERRORS = ("SQLITE_FULL", "SQLITE_IOERR_SHMSIZE")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a file system is full: ``SQLITE_FULL``, SQLite unable to grow its WAL
    index, ``ENOSPC`` or ``EDQUOT``."""
    if isinstance(exc, OSError):
        return exc.errno in FULL_ERRNOS
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", None) in FULL_SQLITE_ERRORS or "database or disk is full" in str(exc))

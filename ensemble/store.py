"""The SQLite store of one ensemble: every SQL statement lives in this module.

One database file per setup directory.  WAL journaling is used where the file
system supports it (local disks); on network file systems (NFS, Lustre, GPFS,
...) the rollback journal is used because WAL needs shared memory on one host.
Writers use ``BEGIN IMMEDIATE`` and group changes into one transaction per batch.
Samples, steps and results are JSON text, never pickle.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ensemble.status import COMPLETED, RunStatus

SCHEMA_VERSION = 1
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
    message TEXT
);
CREATE INDEX runs_by_status ON runs(status, claimed_by);
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
    placement TEXT
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


class Store:
    """Access to one ensemble database.

    Open with :meth:`create` (new, empty schema) or :meth:`open`.  Read
    methods run in autocommit mode; write methods must be called inside
    :meth:`transaction`, which groups them into one ``BEGIN IMMEDIATE``.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        self._stepset_ids: dict[str, int] = {}

    # -- opening ---------------------------------------------------------------
    @classmethod
    def _connect(cls, path: Path, readonly: bool) -> sqlite3.Connection:
        uri = f"file:{path}?mode={'ro' if readonly else 'rw'}"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    @classmethod
    def create(cls, directory: Path, meta: dict[str, Any]) -> "Store":
        """Create a database with the current schema in ``directory``."""
        path = directory / DB_NAME
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        conn.execute(f"PRAGMA journal_mode={journal_mode_for(directory)}")
        conn.executescript(SCHEMA)
        store = cls(conn, path, readonly=False)
        store._configure()
        with store.transaction():
            store.set_meta("schema_version", SCHEMA_VERSION)
            for key, value in meta.items():
                store.set_meta(key, value)
        return store

    @classmethod
    def open(cls, directory: Path, readonly: bool = False) -> "Store":
        """Open an existing database; raise FileNotFoundError if there is none."""
        path = directory / DB_NAME
        if not path.is_file():
            raise FileNotFoundError(path)
        store = cls(cls._connect(path, readonly), path, readonly)
        store._configure()
        version = store.get_meta("schema_version")
        if version != SCHEMA_VERSION:
            raise RuntimeError(f"{path}: schema version {version}, this ensemble reads {SCHEMA_VERSION}")
        return store

    def _configure(self) -> None:
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=OFF")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            # SQLite rolls back by itself on some errors (SQLITE_FULL): never mask the error.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self, name: str = "sp") -> Iterator[None]:
        """A nested unit inside a transaction: rolled back alone on error (the error propagates)."""
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            raise
        self.conn.execute(f"RELEASE {name}")

    # -- meta ------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def bump_generation(self) -> None:
        """Mark that runs changed outside a manager (managers reload their queue)."""
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES ('generation', '1') "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
        )

    def generation(self) -> int:
        return int(self.get_meta("generation", 0))

    # -- events ----------------------------------------------------------------
    def add_events(self, events: Iterable[tuple[int | None, str, Any]]) -> None:
        """Record ``(run_id, kind, detail)`` events with the current time."""
        now = time.time()
        self.conn.executemany(
            "INSERT INTO events(time, run_id, kind, detail) VALUES (?, ?, ?, ?)",
            ((now, run_id, kind, None if detail is None else json.dumps(detail)) for run_id, kind, detail in events),
        )

    def events(self, run_id: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT id, time, run_id, kind, detail FROM events"
        rows = self.conn.execute(sql + (" WHERE run_id=? ORDER BY id" if run_id else " ORDER BY id"),
                                 (run_id,) if run_id else ()).fetchall()
        return [dict(id=r[0], time=r[1], run_id=r[2], kind=r[3], detail=json.loads(r[4]) if r[4] else None)
                for r in rows]

    # -- runs: writing ---------------------------------------------------------
    def _stepset_id(self, steps_json: str) -> int:
        cached = self._stepset_ids.get(steps_json)
        if cached is not None:
            return cached
        row = self.conn.execute("SELECT id FROM stepsets WHERE steps=?", (steps_json,)).fetchone()
        if row is None:
            row = (self.conn.execute("INSERT INTO stepsets(steps) VALUES (?)", (steps_json,)).lastrowid,)
        self._stepset_ids[steps_json] = row[0]
        return row[0]

    def insert_runs(self, first_id: int, rows: Sequence[tuple[str, str, str]]) -> None:
        """Insert ``(sample_json, steps_json, run_dir)`` rows with ids from ``first_id``."""
        self.conn.executemany(
            "INSERT INTO runs(id, sample, stepset, run_dir) VALUES (?, ?, ?, ?)",
            ((first_id + i, sample, self._stepset_id(steps), run_dir) for i, (sample, steps, run_dir) in enumerate(rows)),
        )

    def next_run_id(self) -> int:
        return (self.conn.execute("SELECT MAX(id) FROM runs").fetchone()[0] or 0) + 1

    def set_result(self, run_id: int, result_json: str | None) -> None:
        self.conn.execute("UPDATE runs SET result=? WHERE id=?", (result_json, run_id))

    def dequeue(self, run_ids: Iterable[int]) -> list[int]:
        """Mark queued runs killed (running ones too); return the ids changed."""
        changed = []
        for run_id in run_ids:
            cur = self.conn.execute(
                "UPDATE runs SET status=?, message='dequeued' WHERE id=? AND status=?",
                (int(RunStatus.KILLED), run_id, int(RunStatus.QUEUED)),
            )
            if cur.rowcount:
                changed.append(run_id)
        return changed

    def requeue(self, run_ids: Iterable[int], hard: bool) -> list[int]:
        """Reset completed runs to queued (step 0 and no restarts if ``hard``)."""
        completed = ",".join(str(int(s)) for s in COMPLETED)
        extra = ", step=0, restarts=0, result=NULL" if hard else ""
        changed = []
        for run_id in run_ids:
            cur = self.conn.execute(
                f"UPDATE runs SET status=0, message=NULL{extra} "
                f"WHERE id=? AND status IN ({completed})",
                (run_id,),
            )
            if cur.rowcount:
                changed.append(run_id)
        return changed

    # -- runs: reading ---------------------------------------------------------
    def _rows_for_ids(self, sql: str, run_ids: Iterable[int]) -> list[tuple]:
        """Rows of ``sql`` (with ``{marks}`` inside ``IN (...)``) for any number of ids, in chunks
        that stay below SQLite's limit on bound parameters."""
        ids, rows = list(run_ids), []
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            rows += self.conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def existing_run_ids(self, run_ids: Iterable[int]) -> set[int]:
        return {r[0] for r in self._rows_for_ids("SELECT id FROM runs WHERE id IN ({marks})", run_ids)}

    def counts_by_status(self) -> dict[RunStatus, int]:
        counts = {s: 0 for s in RunStatus}
        for status, count in self.conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
            counts[RunStatus(status)] = count
        return counts

    def count_running(self) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM runs WHERE status=0 AND claimed_by IS NOT NULL").fetchone()[0]

    def run_ids_with_status(self, statuses: Sequence[RunStatus]) -> list[int]:
        if not statuses:
            return [r[0] for r in self.conn.execute("SELECT id FROM runs ORDER BY id")]
        marks = ",".join("?" * len(statuses))
        return [r[0] for r in self.conn.execute(
            f"SELECT id FROM runs WHERE status IN ({marks}) ORDER BY id", [int(s) for s in statuses])]

    def run_dirs(self) -> list[tuple[int, str]]:
        return self.conn.execute("SELECT id, run_dir FROM runs ORDER BY id").fetchall()

    def run_dir_set(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT run_dir FROM runs")}

    def runs(self, run_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """Full rows (sample, steps, result decoded) for the given runs, or all."""
        sql = ("SELECT r.id, r.sample, s.steps, r.run_dir, r.status, r.step, r.restarts, r.result, "
               "r.claimed_by, r.message FROM runs r JOIN stepsets s ON s.id = r.stepset")
        if run_ids is None:
            rows = self.conn.execute(sql + " ORDER BY r.id").fetchall()
        else:
            rows = sorted(self._rows_for_ids(sql + " WHERE r.id IN ({marks})", run_ids))
        return [_run_row(r) for r in rows]

    def attempts(self, run_id: int | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT id, run_id, step, attempt, manager, host, pid, start, end, exit_code, signal, outcome, "
               "command, placement FROM attempts")
        rows = self.conn.execute(sql + (" WHERE run_id=? ORDER BY id" if run_id else " ORDER BY id"),
                                 (run_id,) if run_id else ()).fetchall()
        keys = ("id", "run_id", "step", "attempt", "manager", "host", "pid", "start", "end", "exit_code",
                "signal", "outcome", "command", "placement")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item["command"] = json.loads(item["command"])
            item["placement"] = json.loads(item["placement"]) if item["placement"] else None
            out.append(item)
        return out

    def timing(self) -> dict[int, tuple[float, float | None, int]]:
        """Per run: first attempt start, last attempt end, number of attempts."""
        return {r[0]: (r[1], r[2], r[3]) for r in self.conn.execute(
            "SELECT run_id, MIN(start), MAX(end), COUNT(*) FROM attempts GROUP BY run_id")}

    # -- leases ----------------------------------------------------------------
    def leases(self) -> list[dict[str, Any]]:
        keys = ("manager", "host", "pid", "pid_start", "started", "heartbeat", "allow_multiple")
        return [dict(zip(keys, r)) for r in self.conn.execute(f"SELECT {', '.join(keys)} FROM leases")]

    def add_lease(self, lease: dict[str, Any]) -> None:
        keys = list(lease)
        self.conn.execute(f"INSERT INTO leases({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                          [lease[k] for k in keys])

    def drop_lease(self, manager: str) -> None:
        self.conn.execute("DELETE FROM leases WHERE manager=?", (manager,))

    def renew_lease(self, manager: str) -> bool:
        """Refresh this manager's heartbeat; False when its lease row is gone (taken over)."""
        return self.conn.execute("UPDATE leases SET heartbeat=? WHERE manager=?",
                                 (time.time(), manager)).rowcount == 1

    # -- inbox bookkeeping -----------------------------------------------------
    def inbox_done(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM inbox_done WHERE name=?", (name,)).fetchone() is not None

    def mark_inbox_done(self, name: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO inbox_done(name, time) VALUES (?, ?)", (name, time.time()))


    # -- execution ---------------------------------------------------------------
    def queued_ids(self, after: int, limit: int) -> list[int]:
        """Queued, unclaimed run ids above ``after``, ascending."""
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM runs WHERE status=0 AND claimed_by IS NULL AND id>? ORDER BY id LIMIT ?", (after, limit))]

    def count_queued(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status=0").fetchone()[0]

    def attempt_counts(self, run_ids: Sequence[int]) -> dict[int, int]:
        return dict(self._rows_for_ids(
            "SELECT run_id, MAX(attempt) FROM attempts WHERE run_id IN ({marks}) GROUP BY run_id", run_ids))

    def statuses(self, run_ids: Sequence[int]) -> dict[int, RunStatus]:
        rows = self._rows_for_ids("SELECT id, status FROM runs WHERE id IN ({marks})", run_ids)
        return {run_id: RunStatus(status) for run_id, status in rows}

    def claim(self, manager: str, run_id: int) -> bool:
        """Take one queued, unclaimed run (inside a transaction); return whether it was taken."""
        return self.conn.execute("UPDATE runs SET claimed_by=? WHERE id=? AND status=0 AND claimed_by IS NULL",
                                 (manager, run_id)).rowcount == 1

    def claim_next(self, manager: str, limit: int, exclude: Sequence[int] = ()) -> list[int]:
        """Take up to ``limit`` of the lowest queued, unclaimed runs not in ``exclude`` (inside a
        transaction).

        Under ``BEGIN IMMEDIATE`` nobody else writes between the select and the update, so
        managers sharing an ensemble take disjoint batches and never lose a claim.
        """
        skip = f" AND id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM runs WHERE status=0 AND claimed_by IS NULL{skip} ORDER BY id LIMIT ?",
            (*exclude, limit))]
        for run_id in ids:
            self.conn.execute("UPDATE runs SET claimed_by=? WHERE id=?", (manager, run_id))
        return ids

    def insert_attempt(self, run_id: int, step: int, attempt: int, manager: str, host: str, start: float,
                       command: list[str], placement: list[dict] | None) -> int:
        """Record an attempt before its process starts; return the attempt's row id."""
        return self.conn.execute(
            "INSERT INTO attempts(run_id, step, attempt, manager, host, start, command, placement) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, step, attempt, manager, host, start, json.dumps(command),
             None if placement is None else json.dumps(placement))).lastrowid

    def recover_orphans(self, now: float) -> tuple[int, int]:
        """Close attempts and free runs of managers that hold no lease; return (attempts, runs)."""
        attempts = self.conn.execute(
            "UPDATE attempts SET end=?, outcome='interrupted' WHERE end IS NULL "
            "AND manager NOT IN (SELECT manager FROM leases)", (now,)).rowcount
        runs = self.conn.execute(
            "UPDATE runs SET claimed_by=NULL WHERE claimed_by IS NOT NULL "
            "AND claimed_by NOT IN (SELECT manager FROM leases)").rowcount
        return attempts, runs

    def count_failed(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status=?", (int(RunStatus.FAILURE),)).fetchone()[0]

    def apply(self, batch: "WriteBatch") -> None:
        """Execute a :class:`WriteBatch`'s statements (inside a transaction), in its fixed order."""
        for sql, rows in batch.ops.items():
            if rows:
                self.conn.executemany(sql, rows)


class WriteBatch:
    """Changes one manager collected since its last flush, committed in one fenced transaction.

    Every write to a run carries ``AND claimed_by=<manager>`` and attempts are updated by their
    own row id, so a manager that lost its lease can never change another manager's runs.
    """

    PID = "UPDATE attempts SET pid=? WHERE id=?"
    END = "UPDATE attempts SET end=?, exit_code=?, signal=?, outcome=? WHERE id=? AND end IS NULL"
    PROGRESS = "UPDATE runs SET step=?, restarts=? WHERE id=? AND claimed_by=?"
    COMPLETE = ("UPDATE runs SET status=?, claimed_by=NULL, step=?, restarts=?, message=?, "
                "result=COALESCE(?, result) WHERE id=? AND status=0 AND claimed_by=?")
    UNCLAIM = "UPDATE runs SET claimed_by=NULL, step=?, restarts=? WHERE id=? AND claimed_by=?"
    EVENT = "INSERT INTO events(time, run_id, kind, detail) VALUES (?, ?, ?, ?)"

    #: Statements run in this order at a flush, each with ``executemany``.  Between two flushes a
    #: run progresses before it completes or is released, so this order equals the calls' order.
    ORDER = (PID, END, PROGRESS, COMPLETE, UNCLAIM, EVENT)

    def __init__(self, manager: str) -> None:
        self.manager = manager
        self.ops: dict[str, list[tuple]] = {sql: [] for sql in self.ORDER}

    def __bool__(self) -> bool:
        return any(self.ops.values())

    def only_pids(self) -> bool:
        """Whether nothing but pids of started attempts waits (they may wait for the next flush)."""
        return not any(rows for sql, rows in self.ops.items() if sql is not self.PID)

    def set_pid(self, attempt_id: int, pid: int) -> None:
        self.ops[self.PID].append((pid, attempt_id))

    def end_attempt(self, attempt_id: int, end: float, exit_code: int | None, signal: int | None,
                    outcome: str) -> None:
        self.ops[self.END].append((end, exit_code, signal, outcome, attempt_id))

    def progress(self, run_id: int, step: int, restarts: int) -> None:
        self.ops[self.PROGRESS].append((step, restarts, run_id, self.manager))

    def complete(self, run_id: int, status: RunStatus, step: int, restarts: int, message: str | None,
                 result_json: str | None) -> None:
        self.ops[self.COMPLETE].append((int(status), step, restarts, message, result_json, run_id, self.manager))

    def unclaim(self, run_id: int, step: int, restarts: int) -> None:
        self.ops[self.UNCLAIM].append((step, restarts, run_id, self.manager))

    def event(self, run_id: int | None, kind: str, detail: Any = None) -> None:
        self.ops[self.EVENT].append((time.time(), run_id, kind, None if detail is None else json.dumps(detail)))

    def clear(self) -> None:
        for rows in self.ops.values():
            rows.clear()


def _run_row(r: tuple) -> dict[str, Any]:
    return dict(
        id=r[0], sample=json.loads(r[1]), steps=json.loads(r[2]), run_dir=r[3], status=RunStatus(r[4]),
        step=r[5], restarts=r[6], result=None if r[7] is None else json.loads(r[7]), claimed_by=r[8],
        message=r[9],
    )


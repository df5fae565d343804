"""The store of one ensemble: opening, transactions, meta and events."""
from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.spec.samplehash import hash_of_json
from ensemble.store.execution import ExecutionQueries
from ensemble.store.runs import RunQueries
from ensemble.store.schema import BUSY_TIMEOUT_MS, DB_NAME, MIGRATIONS, SCHEMA, SCHEMA_VERSION, journal_mode_for
from ensemble.store.summary import SummaryQueries


class Store(RunQueries, ExecutionQueries, SummaryQueries):
    """Access to one ensemble database.

    Open with :meth:`create` (new, empty schema) or :meth:`open`.  Read
    methods run in autocommit mode; write methods must be called inside
    :meth:`transaction`, which groups them into one ``BEGIN IMMEDIATE``.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly
        #: The version of the file as opened (a read-only reader leaves an older one as it is).
        self.schema_version = SCHEMA_VERSION
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
        try:
            store._configure()
            version = store.get_meta("schema_version")
        except sqlite3.DatabaseError as exc:
            store.close()
            if not _foreign(exc):
                raise
            raise EnsembleError(f"setup_dir: {str(path)!r} is not an ensemble database ({exc}): corrupted, or "
                                "made by another program") from None
        if version != SCHEMA_VERSION and not readonly and version in MIGRATIONS:
            version = store._migrate(version)
        if version != SCHEMA_VERSION and not (readonly and version in MIGRATIONS):
            store.close()
            raise EnsembleError(f"setup_dir: {str(path)!r} has schema version {version}; this version of ensemble "
                                f"reads {SCHEMA_VERSION} and older (a newer ensemble made it?)")
        store.schema_version = version
        return store

    def _migrate(self, version: int) -> int:
        """Bring an older database up to :data:`SCHEMA_VERSION`, one transaction per step."""
        while version in MIGRATIONS:
            with self.transaction():
                for statement in MIGRATIONS[version]:
                    self.conn.execute(statement)
                version += 1
                self.set_meta("schema_version", version)
        return version

    def _configure(self) -> None:
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.conn.create_function("ensemble_sample_hash", 1, hash_of_json, deterministic=True)

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

    def events(self, run_id: int | None = None, kind: str | None = None) -> list[dict[str, Any]]:
        """Events, oldest first: all, or those of one run, or of one kind."""
        where = [(clause, value) for clause, value in (("run_id=?", run_id), ("kind=?", kind)) if value]
        sql = "SELECT id, time, run_id, kind, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(clause for clause, _ in where)
        rows = self.conn.execute(sql + " ORDER BY id", [value for _, value in where]).fetchall()
        return [dict(id=r[0], time=r[1], run_id=r[2], kind=r[3], detail=json.loads(r[4]) if r[4] else None)
                for r in rows]


def _foreign(exc: sqlite3.DatabaseError) -> bool:
    """Whether opening failed because the file is not an ensemble database (rather than, say, a
    full disk or an I/O error, which are reported as such)."""
    return str(exc) == "file is not a database" or str(exc) == "no such table: meta"

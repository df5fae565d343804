"""What managers write and read while they execute: leases, inbox bookkeeping, claims, attempts."""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ensemble.status import RunStatus
from ensemble.store.batch import CHAINED, WriteBatch
from ensemble.store.runs import id_chunks

#: Run ids ``(low, high)``, both included; None: every run.
RunRange = tuple[int, int] | None
#: SQLite's largest integer: the upper bound of an open range.
MAX_ID = 2 ** 63 - 1


def _bounds(run_range: RunRange) -> tuple[int, int]:
    return (1, MAX_ID) if run_range is None else (int(run_range[0]), int(run_range[1]))


class ExecutionQueries:
    """Mixed into :class:`~ensemble.store.Store`: the SQL of managers."""

    conn: Any

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
    def queued_ids(self, after: int, limit: int, run_range: RunRange = None) -> list[int]:
        """Queued, unclaimed run ids above ``after`` (and within ``run_range``), ascending."""
        low, high = _bounds(run_range)
        return [r[0] for r in self.conn.execute(
            "SELECT id FROM runs WHERE status=0 AND claimed_by IS NULL AND id>? AND id<=? ORDER BY id LIMIT ?",
            (max(after, low - 1), high, limit))]

    def count_queued(self, run_range: RunRange = None) -> int:
        """Queued runs (those with ids in ``run_range`` only, when given)."""
        if run_range is None:
            return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status=0").fetchone()[0]
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status=0 AND id BETWEEN ? AND ?",
                                 _bounds(run_range)).fetchone()[0]

    def count_backlog(self, live_managers: Sequence[str]) -> int:
        """Queued runs no live manager holds: unclaimed, or claimed by a manager that died."""
        marks = ",".join("?" * len(live_managers))
        held = f" AND (claimed_by IS NULL OR claimed_by NOT IN ({marks}))" if live_managers else ""
        return self.conn.execute(f"SELECT COUNT(*) FROM runs WHERE status=0{held}", list(live_managers)).fetchone()[0]

    def attempt_counts(self, run_ids: Sequence[int]) -> dict[int, int]:
        return dict(self._rows_for_ids(
            "SELECT run_id, MAX(attempt) FROM attempts WHERE run_id IN ({marks}) GROUP BY run_id", run_ids))

    def statuses(self, run_ids: Sequence[int]) -> dict[int, RunStatus]:
        rows = self._rows_for_ids("SELECT id, status FROM runs WHERE id IN ({marks})", run_ids)
        return {run_id: RunStatus(status) for run_id, status in rows}

    def claim_all(self, manager: str, run_ids: Sequence[int]) -> set[int]:
        """Take queued, unclaimed runs (inside a transaction), one statement per chunk of ids;
        return those not taken (claimed elsewhere, or no longer queued)."""
        taken = 0
        for chunk in id_chunks(run_ids):
            taken += self.conn.execute(
                f"UPDATE runs SET claimed_by=? WHERE id IN ({','.join('?' * len(chunk))}) AND status=0 "
                "AND claimed_by IS NULL", (manager, *chunk)).rowcount
        if taken == len(set(run_ids)):
            return set()
        holders = self._rows_for_ids("SELECT id, claimed_by FROM runs WHERE id IN ({marks})", run_ids)
        return set(run_ids) - {run_id for run_id, holder in holders if holder == manager}

    def claim_next(self, manager: str, limit: int, exclude: Sequence[int] = (), run_range: RunRange = None) -> list[int]:
        """Take up to ``limit`` of the lowest queued, unclaimed runs not in ``exclude`` (and within
        ``run_range``) inside a transaction.

        Under ``BEGIN IMMEDIATE`` nobody else writes between the select and the update, so
        managers sharing an ensemble take disjoint batches and never lose a claim.
        """
        skip = f" AND id NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
        ids = [r[0] for r in self.conn.execute(
            f"SELECT id FROM runs WHERE status=0 AND claimed_by IS NULL AND id BETWEEN ? AND ?{skip} ORDER BY id LIMIT ?",
            (*_bounds(run_range), *exclude, limit))]
        for run_id in ids:
            self.conn.execute("UPDATE runs SET claimed_by=? WHERE id=?", (manager, run_id))
        return ids

    def insert_attempts(self, manager: str, host: str, rows: list[tuple]) -> list[int]:
        """Record attempts before their processes start, in one statement per chunk; return their
        row ids in the order of ``rows``: ``(run_id, step, attempt, start, command JSON, placement
        JSON or None, chained)``.  A chained attempt (waiting behind another step) has the outcome
        :data:`CHAINED` until it starts.  Inside the writer's transaction (``BEGIN IMMEDIATE``)
        nobody else inserts, so the ids are the next ones after the largest."""
        if not rows:
            return []
        first = self.conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM attempts").fetchone()[0]
        ids = list(range(first, first + len(rows)))
        self.conn.executemany(
            "INSERT INTO attempts(id, run_id, step, attempt, manager, host, start, command, placement, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(i, run_id, step, attempt, manager, host, start, command, placement, CHAINED if chained else None)
             for i, (run_id, step, attempt, start, command, placement, chained) in zip(ids, rows)])
        return ids

    def recover_orphans(self, now: float) -> tuple[int, int]:
        """Close attempts and free runs of managers that hold no lease; return (attempts, runs)."""
        attempts = self.conn.execute(
            "UPDATE attempts SET end=?, outcome='interrupted' WHERE end IS NULL "
            "AND manager NOT IN (SELECT manager FROM leases)", (now,)).rowcount
        runs = self.conn.execute(
            "UPDATE runs SET claimed_by=NULL WHERE claimed_by IS NOT NULL "
            "AND claimed_by NOT IN (SELECT manager FROM leases)").rowcount
        return attempts, runs

    def orphaned_attempts(self, host: str) -> list[dict[str, Any]]:
        """Open attempts on ``host`` of managers that hold no lease (what :meth:`recover_orphans` closes)."""
        keys = ("id", "run_id", "step", "attempt", "pid", "start", "manager", "placement", "outcome")
        rows = self.conn.execute(
            "SELECT id, run_id, step, attempt, pid, start, manager, placement, outcome FROM attempts WHERE end IS NULL "
            "AND host=? AND manager NOT IN (SELECT manager FROM leases) ORDER BY id", (host,))
        return [dict(zip(keys, row)) for row in rows]

    def adopt_attempts(self, manager: str, adopted: Sequence[tuple[int, int, int]]) -> None:
        """Hand open attempts ``(attempt id, run id, pid)`` and their runs to ``manager`` (inside
        the transaction that took its lease)."""
        self.conn.executemany("UPDATE attempts SET manager=?, pid=?, outcome=NULL WHERE id=?",
                              [(manager, pid, attempt_id) for attempt_id, _, pid in adopted])
        self.conn.executemany("UPDATE runs SET claimed_by=? WHERE id=?", [(manager, run_id) for _, run_id, _ in adopted])

    def drop_unstarted(self, attempt_ids: Sequence[int]) -> None:
        """Delete chained attempts of dead managers that never started (inside the lease's transaction)."""
        self.conn.executemany(f"DELETE FROM attempts WHERE id=? AND end IS NULL AND outcome='{CHAINED}'",
                              [(i,) for i in attempt_ids])

    def count_failed(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM runs WHERE status=?", (int(RunStatus.FAILURE),)).fetchone()[0]

    def apply(self, batch: WriteBatch) -> None:
        """Execute a :class:`WriteBatch`'s statements (inside a transaction), in its fixed order."""
        for sql, rows in batch.statements():
            if rows:
                self.conn.executemany(sql, rows)



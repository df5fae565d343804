"""Runs: inserting, changing from outside a manager, and reading them back."""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from ensemble.status import COMPLETED, RunStatus

#: Most step sets whose ids a store remembers.
STEPSET_CACHE = 10_000


class RunQueries:
    """Mixed into :class:`~ensemble.store.Store`: the SQL about runs and attempts."""

    conn: Any
    _stepset_ids: dict[str, int]

    def _stepset_id(self, steps_json: str) -> int:
        cached = self._stepset_ids.get(steps_json)
        if cached is not None:
            return cached
        row = self.conn.execute("SELECT id FROM stepsets WHERE steps=?", (steps_json,)).fetchone()
        if row is None:
            row = (self.conn.execute("INSERT INTO stepsets(steps) VALUES (?)", (steps_json,)).lastrowid,)
        if len(self._stepset_ids) >= STEPSET_CACHE:  # runs with steps of their own: keep memory bounded
            self._stepset_ids.clear()
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

    def count_with_status(self, statuses: Sequence[RunStatus]) -> int:
        """Number of runs with any of ``statuses`` (all runs if none): an index range, not a scan."""
        where = f" WHERE status IN ({','.join('?' * len(statuses))})" if statuses else ""
        return self.conn.execute(f"SELECT COUNT(*) FROM runs{where}", [int(s) for s in statuses]).fetchone()[0]

    def count_running(self) -> int:
        return self.conn.execute(
            "SELECT COUNT(*) FROM runs WHERE status=0 AND claimed_by IS NOT NULL").fetchone()[0]

    def run_ids_with_status(self, statuses: Sequence[RunStatus], last: int | None = None) -> list[int]:
        """Ids with any of ``statuses`` (all if none), ascending; ``last``: only the highest ``last``."""
        where = f"WHERE status IN ({','.join('?' * len(statuses))})" if statuses else ""
        params = [int(s) for s in statuses]
        if last is None:
            return [r[0] for r in self.conn.execute(f"SELECT id FROM runs {where} ORDER BY id", params)]
        rows = self.conn.execute(f"SELECT id FROM runs {where} ORDER BY id DESC LIMIT ?", [*params, last])
        return sorted(r[0] for r in rows)

    def run_dirs(self) -> list[tuple[int, str]]:
        return self.conn.execute("SELECT id, run_dir FROM runs ORDER BY id").fetchall()

    def run_with_dir(self, run_dir: str) -> int | None:
        """The id of the run whose directory is ``run_dir``, if any."""
        row = self.conn.execute("SELECT id FROM runs WHERE run_dir=?", (run_dir,)).fetchone()
        return None if row is None else row[0]

    def existing_run_dirs(self, run_dirs: Iterable[str]) -> set[str]:
        """Which of ``run_dirs`` some run already has."""
        return {r[0] for r in self._rows_for_ids("SELECT run_dir FROM runs WHERE run_dir IN ({marks})", run_dirs)}

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
        job = "job" if self.schema_version >= 2 else "NULL"
        sql = ("SELECT id, run_id, step, attempt, manager, host, pid, start, end, exit_code, signal, outcome, "
               f"command, placement, {job} FROM attempts")
        rows = self.conn.execute(sql + (" WHERE run_id=? ORDER BY id" if run_id else " ORDER BY id"),
                                 (run_id,) if run_id else ()).fetchall()
        keys = ("id", "run_id", "step", "attempt", "manager", "host", "pid", "start", "end", "exit_code",
                "signal", "outcome", "command", "placement", "job")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item["command"] = json.loads(item["command"])
            item["placement"] = json.loads(item["placement"]) if item["placement"] else None
            out.append(item)
        return out


def _run_row(r: tuple) -> dict[str, Any]:
    return dict(
        id=r[0], sample=json.loads(r[1]), steps=json.loads(r[2]), run_dir=r[3], status=RunStatus(r[4]),
        step=r[5], restarts=r[6], result=None if r[7] is None else json.loads(r[7]), claimed_by=r[8],
        message=r[9],
    )


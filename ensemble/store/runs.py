"""Runs: inserting, changing from outside a manager, and reading them back."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ensemble.spec.samplehash import hash_of_json
from ensemble.status import COMPLETED, RunStatus

#: What a run's state in a page of runs can be filtered on: a status, or queued runs split into
#: those a manager has taken (running) and the others (waiting).
STATE_SQL = {"waiting": "(r.status=0 AND r.claimed_by IS NULL)", "running": "(r.status=0 AND r.claimed_by IS NOT NULL)",
             **{s.label: f"r.status={int(s)}" for s in RunStatus if s is not RunStatus.QUEUED}}
#: The columns a page of runs can be sorted and filtered on; ``sample`` and ``result`` take a key.
FIELD_SQL = {"id": "r.id", "status": "r.status", "restarts": "r.restarts", "step": "r.step",
             "runtime": "(SELECT MAX(a.end) - MIN(a.start) FROM attempts a WHERE a.run_id = r.id)",
             "attempts": "(SELECT COUNT(*) FROM attempts a WHERE a.run_id = r.id)",
             "sample": "json_extract(r.sample, ?)", "result": "json_extract(r.result, ?)"}
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", "~")


@dataclass(frozen=True)
class RunPage:
    """Which runs a page shows: ``states`` (keys of :data:`STATE_SQL`; empty: all), an optional
    ``(field, key, operator, value)`` filter (an operator of :data:`OPERATORS`; ``~``: the value's
    text contains it), the sort ``(field, key)`` and the slice.  Fields are keys of
    :data:`FIELD_SQL`; the key is None but for ``sample`` and ``result`` (``""``: a scalar result;
    a key with a double quote cannot be a JSON path here)."""

    states: tuple[str, ...] = ()
    where: tuple[str, str | None, str, str | float] | None = None
    order: tuple[str, str | None] = ("id", None)
    descending: bool = False
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        unknown = [s for s in self.states if s not in STATE_SQL]
        fields = [self.order[0], *([self.where[0]] if self.where else [])]
        unknown += [f for f in fields if f not in FIELD_SQL]
        if self.where and self.where[2] not in OPERATORS:
            unknown.append(self.where[2])
        unknown += [key for key in (self.order[1], self.where[1] if self.where else None) if key and '"' in key]
        if unknown or self.limit < 0 or self.offset < 0:
            raise ValueError(f"RunPage: unknown state, field, operator or key {unknown}, or a negative slice")


def _json_path(key: str | None) -> str:
    return f'$."{key}"' if key else "$"


def _field(field: str, key: str | None) -> tuple[str, list[Any]]:
    """The SQL of a page's column and its parameters."""
    return FIELD_SQL[field], [_json_path(key)] if field in ("sample", "result") else []


def _page_where(page: RunPage) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if page.states:
        clauses.append("(" + " OR ".join(STATE_SQL[state] for state in page.states) + ")")
    if page.where:
        field, key, operator, value = page.where
        sql, key_params = _field(field, key)
        params += key_params
        if operator == "~":
            escaped = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(f"CAST({sql} AS TEXT) LIKE ? ESCAPE '\\'")
            params.append(f"%{escaped}%")
        else:
            clauses.append(f"{sql} {operator} ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
#: Most step sets whose ids a store remembers.
STEPSET_CACHE = 10_000


#: Ids bound in one statement, below SQLite's limit on bound parameters (999 in old builds).
ID_CHUNK = 900


def id_chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    """``ids`` in lists of at most :data:`ID_CHUNK`."""
    ids = list(ids)
    for i in range(0, len(ids), ID_CHUNK):
        yield ids[i:i + ID_CHUNK]


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
            "INSERT INTO runs(id, sample, stepset, run_dir, sample_hash) VALUES (?, ?, ?, ?, ?)",
            ((first_id + i, sample, self._stepset_id(steps), run_dir, hash_of_json(sample))
             for i, (sample, steps, run_dir) in enumerate(rows)),
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
        rows = []
        for chunk in id_chunks(run_ids):
            rows += self.conn.execute(sql.format(marks=",".join("?" * len(chunk))), chunk).fetchall()
        return rows

    def existing_sample_hashes(self, hashes: Iterable[str]) -> set[str]:
        """Those of ``hashes`` that a run of the ensemble has."""
        return {r[0] for r in self._rows_for_ids("SELECT sample_hash FROM runs WHERE sample_hash IN ({marks})", hashes)}

    def existing_run_ids(self, run_ids: Iterable[int]) -> set[int]:
        return {r[0] for r in self._rows_for_ids("SELECT id FROM runs WHERE id IN ({marks})", run_ids)}

    def counts_by_status(self, run_range: tuple[int, int] | None = None) -> dict[RunStatus, int]:
        """Runs by status (those with ids in ``run_range``, both ends included, when given)."""
        counts = {s: 0 for s in RunStatus}
        where, args = ("", ()) if run_range is None else (" WHERE id BETWEEN ? AND ?", tuple(run_range))
        for status, count in self.conn.execute(f"SELECT status, COUNT(*) FROM runs{where} GROUP BY status", args):
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

    def runs_to_execute(self, run_ids: Sequence[int]) -> list[tuple[int, str, int, str, str, int, int]]:
        """What an engine needs of each run, in id order: ``(id, sample JSON, stepset id, steps
        JSON, run_dir, step, restarts)``; runs share their stepset's JSON, which the engine decodes
        once, and the sample's text goes to each step's environment as it is."""
        sql = ("SELECT r.id, r.sample, r.stepset, s.steps, r.run_dir, r.step, r.restarts FROM runs r "
               "JOIN stepsets s ON s.id = r.stepset WHERE r.id IN ({marks})")
        return sorted(self._rows_for_ids(sql, run_ids))

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

    def runs_page(self, page: RunPage) -> tuple[int, list[dict[str, Any]]]:
        """How many runs match ``page``'s filters, and its slice of them: id, sample, result,
        status, claimed_by, restarts, step, message, runtime (last attempt end - first start) and
        attempts, sorted (ties by id)."""
        where, params = _page_where(page)
        total = self.conn.execute(f"SELECT COUNT(*) FROM runs r{where}", params).fetchone()[0]
        order, order_params = _field(*page.order)
        direction = " DESC" if page.descending else ""
        rows = self.conn.execute(
            "SELECT r.id, r.sample, r.result, r.status, r.claimed_by, r.restarts, r.step, r.message, "
            f"{FIELD_SQL['runtime']}, {FIELD_SQL['attempts']} FROM runs r{where} "
            f"ORDER BY {order}{direction}, r.id{direction} LIMIT ? OFFSET ?",
            [*params, *order_params, page.limit, page.offset]).fetchall()
        keys = ("id", "sample", "result", "status", "claimed_by", "restarts", "step", "message", "runtime", "attempts")
        out = []
        for row in rows:
            item = dict(zip(keys, row))
            item.update(sample=json.loads(item["sample"]), status=RunStatus(item["status"]),
                        result=None if item["result"] is None else json.loads(item["result"]))
            out.append(item)
        return total, out

    def first_samples_and_results(self, limit: int) -> tuple[list[Any], list[Any]]:
        """The samples of the first ``limit`` runs and the first ``limit`` results (to name columns)."""
        samples = [json.loads(r[0]) for r in self.conn.execute("SELECT sample FROM runs ORDER BY id LIMIT ?", (limit,))]
        results = [json.loads(r[0]) for r in self.conn.execute(
            "SELECT result FROM runs WHERE result IS NOT NULL ORDER BY id LIMIT ?", (limit,))]
        return samples, results

    def open_attempts(self, limit: int) -> list[dict[str, Any]]:
        """The oldest ``limit`` attempts still open of runs a manager holds: run_id, step, attempt, host, start."""
        keys = ("run_id", "step", "attempt", "host", "start")
        return [dict(zip(keys, r)) for r in self.conn.execute(
            "SELECT a.run_id, a.step, a.attempt, a.host, a.start FROM attempts a JOIN runs r ON r.id = a.run_id "
            "WHERE a.end IS NULL AND a.outcome IS NULL AND r.status=0 AND r.claimed_by IS NOT NULL "
            "ORDER BY a.start LIMIT ?", (limit,))]

    def completion_times(self, last: int) -> list[float]:
        """When the last ``last`` completed runs ended (their last attempt's end), ascending."""
        return sorted(r[0] for r in self.conn.execute(
            "SELECT MAX(a.end) AS done FROM attempts a JOIN runs r ON r.id = a.run_id WHERE r.status != 0 "
            "GROUP BY a.run_id HAVING done IS NOT NULL ORDER BY done DESC LIMIT ?", (last,)))

    def attempt_spans(self) -> list[dict[str, Any]]:
        """The finished attempts with only what charts need: run_id, host, start, end, outcome, placement."""
        keys = ("run_id", "host", "start", "end", "outcome", "placement")
        return [dict(zip(keys, (*r[:5], json.loads(r[5]) if r[5] else None))) for r in self.conn.execute(
            "SELECT run_id, host, start, end, outcome, placement FROM attempts WHERE end IS NOT NULL ORDER BY id")]

    def timing(self) -> dict[int, tuple[float, float | None, int]]:
        """Per run: first attempt start, last attempt end, number of attempts."""
        return {r[0]: (r[1], r[2], r[3]) for r in self.conn.execute(
            "SELECT run_id, MIN(start), MAX(end), COUNT(*) FROM attempts GROUP BY run_id")}


def _run_row(r: tuple) -> dict[str, Any]:
    return dict(
        id=r[0], sample=json.loads(r[1]), steps=json.loads(r[2]), run_dir=r[3], status=RunStatus(r[4]),
        step=r[5], restarts=r[6], result=None if r[7] is None else json.loads(r[7]), claimed_by=r[8],
        message=r[9],
    )


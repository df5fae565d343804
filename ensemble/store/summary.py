"""Columnar reads for summaries: runs and attempts in id order, a chunk at a time, one list per column.

Each chunk of runs is one query whose aggregates (``group_concat``, ``json_group_array``) carry a
column each, decoded in one ``json.loads`` call: far fewer Python objects than a row at a time.
Samples and results are stored as JSON, so their concatenation is already a JSON array.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

#: Runs (or attempts) read per query: bounds what a summary holds besides what it returns.
CHUNK = 50_000
RUN_SQL = """
SELECT count(*), max(id), group_concat(id), group_concat(status), group_concat(restarts), group_concat(step),
       group_concat(claimed_by IS NOT NULL), json_group_array(run_dir), json_group_array(message),
       group_concat(sample), group_concat(coalesce(result, 'null')), json_group_array({sample_hash})
FROM (SELECT * FROM runs WHERE id > ? {where} ORDER BY id LIMIT ?)
"""
RUN_FIELDS = ("id", "status", "restarts", "step", "running", "run_dir", "message", "sample", "result", "sample_hash")
#: The fields read with ``json_group_array`` (the others are ``group_concat`` lists, to bracket).
ARRAY_FIELDS = ("run_dir", "message", "sample_hash")
#: Per run with attempts (ids in a range): first start and last end in microseconds (integers are
#: exact as text; doubles are not), and how many.
TOTALS_SQL = """
SELECT group_concat(run_id), group_concat(CAST(round(s * 1e6) AS INTEGER)),
       group_concat(coalesce(CAST(round(e * 1e6) AS INTEGER), 'null')), group_concat(n)
FROM (SELECT run_id, MIN(start) AS s, MAX(end) AS e, COUNT(*) AS n FROM attempts WHERE run_id BETWEEN ? AND ?
      GROUP BY run_id)
"""
#: Per run with attempts: the host of its last one (a bare column beside a lone MAX takes that row's value).
HOSTS_SQL = ("SELECT json_group_array(host) FROM (SELECT host, MAX(id) FROM attempts WHERE run_id BETWEEN ? AND ? "
             "GROUP BY run_id)")
#: The totals of a run without attempts.
NO_ATTEMPTS = {"start": None, "end": None, "attempts": 0, "host": None}
ATTEMPT_FIELDS = ("run_id", "step", "attempt", "manager", "host", "pid", "job", "start", "end", "exit_code",
                  "signal", "outcome", "command", "placement")
#: Each key of the JSON objects of ``{column}`` once (NULL: a value that is not an object), in order of
#: first appearance: SQLite emits a DISTINCT row when it first sees it, scanning runs in id order.
KEYS_SQL = """
SELECT DISTINCT CASE json_type(r.{column}) WHEN 'object' THEN j.key END
FROM runs r, json_each(r.{column}) j WHERE r.{column} IS NOT NULL
"""


class SummaryQueries:
    """Mixed into :class:`~ensemble.store.Store`: the reads behind tables of runs and attempts."""

    conn: Any
    schema_version: int

    def run_chunks(self, statuses: Sequence[int] = (), with_result: bool = False) -> Iterator[dict[str, list]]:
        """Runs in id order (with any of ``statuses`` if given; with a result only if asked),
        :data:`CHUNK` at a time: a list per field of :data:`RUN_FIELDS` (sample and result decoded,
        running a bool) plus, from the attempts, ``start`` (first), ``end`` (last), ``attempts``
        (how many) and ``host`` (of the last one)."""
        where = "".join([f" AND status IN ({','.join('?' * len(statuses))})" if statuses else "",
                         " AND result IS NOT NULL" if with_result else ""])
        sample_hash = "sample_hash" if self.schema_version >= 3 else "NULL"
        sql, last = RUN_SQL.format(where=where, sample_hash=sample_hash), 0
        while True:
            count, last_id, *texts = self.conn.execute(sql, (last, *statuses, CHUNK)).fetchone()
            if not count:
                return
            columns = {name: json.loads(text if name in ARRAY_FIELDS else f"[{text}]")
                       for name, text in zip(RUN_FIELDS, texts)}
            columns["running"] = [bool(v) for v in columns["running"]]
            columns.update(self._attempt_totals(columns["id"]))
            yield columns
            last = last_id

    def _attempt_totals(self, ids: list[int]) -> dict[str, list]:
        """``start``, ``end``, ``attempts`` and ``host`` of the runs ``ids`` (ascending), aligned with them."""
        span = (ids[0], ids[-1])
        run_ids, start, end, attempts = (json.loads(f"[{text or ''}]") for text in
                                         self.conn.execute(TOTALS_SQL, span).fetchone())
        totals = {"start": [t / 1e6 for t in start], "end": [None if t is None else t / 1e6 for t in end],
                  "attempts": attempts, "host": json.loads(self.conn.execute(HOSTS_SQL, span).fetchone()[0])}
        if run_ids != ids:  # some runs have no attempts, or runs in the range are not in the chunk
            at = dict(zip(run_ids, range(len(run_ids))))
            rows = [at.get(run_id) for run_id in ids]
            totals = {name: [NO_ATTEMPTS[name] if i is None else column[i] for i in rows]
                      for name, column in totals.items()}
        return totals

    def attempt_chunks(self) -> Iterator[dict[str, list]]:
        """Every attempt in id order, :data:`CHUNK` at a time: a list per field of :data:`ATTEMPT_FIELDS`
        (command and placement decoded; ``job`` None in a schema-1 database)."""
        job = "job" if self.schema_version >= 2 else "NULL"
        sql = (f"SELECT id, {', '.join(job if f == 'job' else f for f in ATTEMPT_FIELDS)} FROM attempts "
               "WHERE id > ? ORDER BY id LIMIT ?")
        last = 0
        while True:
            rows = self.conn.execute(sql, (last, CHUNK)).fetchall()
            if not rows:
                return
            ids, *values = zip(*rows)
            columns = dict(zip(ATTEMPT_FIELDS, map(list, values)))
            columns["command"] = json.loads(f"[{','.join(columns['command'])}]")
            columns["placement"] = json.loads(f"[{','.join(p or 'null' for p in columns['placement'])}]")
            yield columns
            last = ids[-1]

    def sample_labels(self) -> list[str]:
        """Every label of any run's sample, in order of first appearance."""
        return [r[0] for r in self.conn.execute(KEYS_SQL.format(column="sample")) if r[0] is not None]

    def result_keys(self) -> list[str | None]:
        """Every key of any run's dict result, in order of first appearance; None where a result
        that is not a dict first appears."""
        return [r[0] for r in self.conn.execute(KEYS_SQL.format(column="result"))]

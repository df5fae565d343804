"""The write batch of one manager: its changes between two flushes."""
from __future__ import annotations

import json
import time
from typing import Any

from ensemble.status import RunStatus

#: ``attempts.outcome`` of a chained attempt: recorded, waiting behind another step, not started.
CHAINED = "chained"


class WriteBatch:
    """Changes one manager collected since its last flush, committed in one fenced transaction.

    Every write to a run carries ``AND claimed_by=<manager>`` and attempts are updated by their
    own row id, so a manager that lost its lease can never change another manager's runs.
    """

    PID = "UPDATE attempts SET pid=? WHERE id=?"
    JOB = "UPDATE attempts SET job=? WHERE id=?"
    STARTED = f"UPDATE attempts SET pid=?, start=?, outcome=NULL WHERE id=? AND outcome='{CHAINED}'"
    DROP = f"DELETE FROM attempts WHERE id=? AND end IS NULL AND outcome='{CHAINED}'"
    END = "UPDATE attempts SET end=?, exit_code=?, signal=?, outcome=? WHERE id=? AND end IS NULL"
    #: A chained attempt that started and ended between two flushes: both in one write.
    STARTED_END = ("UPDATE attempts SET pid=?, start=?, end=?, exit_code=?, signal=?, outcome=? "
                   f"WHERE id=? AND end IS NULL AND outcome='{CHAINED}'")
    PROGRESS = "UPDATE runs SET step=?, restarts=? WHERE id=? AND claimed_by=?"
    COMPLETE = ("UPDATE runs SET status=?, claimed_by=NULL, step=?, restarts=?, message=?, "
                "result=COALESCE(?, result) WHERE id=? AND status=0 AND claimed_by=?")
    UNCLAIM = "UPDATE runs SET claimed_by=NULL, step=?, restarts=? WHERE id=? AND claimed_by=?"
    EVENT = "INSERT INTO events(time, run_id, kind, detail) VALUES (?, ?, ?, ?)"

    #: Statements run in this order at a flush, each with ``executemany``.  Between two flushes a
    #: run progresses before it completes or is released, so this order equals the calls' order.
    ORDER = (PID, JOB, STARTED, STARTED_END, END, DROP, PROGRESS, COMPLETE, UNCLAIM, EVENT)

    def __init__(self, manager: str) -> None:
        self.manager = manager
        self.ops: dict[str, list[tuple]] = {sql: [] for sql in self.ORDER if sql != self.STARTED}
        #: Chained starts by attempt id, until their end joins them or the flush writes them alone.
        self.started: dict[int, tuple[int, float]] = {}

    def __bool__(self) -> bool:
        return bool(self.started) or any(self.ops.values())

    def only_pids(self) -> bool:
        """Whether nothing but pids and job ids of started attempts waits (they may wait for the next flush)."""
        return not self.started and not any(rows for sql, rows in self.ops.items() if sql not in (self.PID, self.JOB))

    def statements(self) -> list[tuple[str, list[tuple]]]:
        """Each statement with its rows, in :attr:`ORDER`."""
        started = [(pid, start, attempt_id) for attempt_id, (pid, start) in self.started.items()]
        return [(sql, started if sql == self.STARTED else self.ops[sql]) for sql in self.ORDER]

    def set_job(self, attempt_id: int, job: str) -> None:
        """The resource manager's id of a started attempt (a Flux job id)."""
        self.ops[self.JOB].append((job, attempt_id))

    def set_pid(self, attempt_id: int, pid: int) -> None:
        self.ops[self.PID].append((pid, attempt_id))

    def chained_start(self, attempt_id: int, pid: int, start: float) -> None:
        """A chained attempt (recorded ahead) started: its pid, and when it really began."""
        self.started[attempt_id] = (pid, start)

    def drop_attempt(self, attempt_id: int) -> None:
        """A chained attempt recorded ahead never started: it never existed."""
        self.ops[self.DROP].append((attempt_id,))

    def end_attempt(self, attempt_id: int, end: float, exit_code: int | None, signal: int | None,
                    outcome: str) -> None:
        started = self.started.pop(attempt_id, None)
        if started is None:
            self.ops[self.END].append((end, exit_code, signal, outcome, attempt_id))
        else:
            self.ops[self.STARTED_END].append((*started, end, exit_code, signal, outcome, attempt_id))

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
        self.started.clear()
        for rows in self.ops.values():
            rows.clear()

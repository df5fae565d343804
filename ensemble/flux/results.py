"""What a Flux job's eventlog means for the engine: an exit code like a local process's.

A job ends with a ``finish`` event carrying its wait status; an ``exception`` event before it
says why Flux ended it (``cancel``, ``timeout``, an ``alloc`` or ``exec`` failure).  The engine
turns exit codes into outcomes itself (:func:`ensemble.engine.runstate.outcome_of`): a job the
manager cancelled carries the manager's own kill reason, so only Flux's own verdicts need a code.
"""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobEnd:
    """How one job ended: its exit code (minus a signal), or why it never ran."""

    code: int
    #: Set when the job never started (unsatisfiable request, exec failure): a launch error.
    start_error: str | None = None


def code_of_wait_status(status: int) -> int:
    """A wait status (the ``finish`` event's ``status``) as an exit code, or minus the signal."""
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def job_end(events: list[dict[str, Any]]) -> JobEnd | None:
    """The end of a job from its eventlog entries (``{"name": ..., "context": {...}}``), or None
    while it has not ended.  An exception before ``start`` is a start error; a ``timeout``
    exception ends the job as SIGALRM would (Flux's backstop limit); a job cancelled before it
    started ends as SIGKILL (the manager's kill reason, not a start error)."""
    started, exception = False, None
    for event in events:
        name, context = event.get("name"), event.get("context") or {}
        if name == "start":
            started = True
        elif name == "exception" and int(context.get("severity", 0)) == 0 and exception is None:
            exception = context
        elif name == "finish":
            code = code_of_wait_status(int(context.get("status", 0)))
            if exception is not None and exception.get("type") == "timeout" and code >= 0:
                code = -signal.SIGALRM
            return JobEnd(code)
        elif name == "clean" and not started:
            why = exception or {}
            if why.get("type") == "cancel":  # cancelled while pending: the manager's kill reason says why
                return JobEnd(-signal.SIGKILL)
            return JobEnd(-signal.SIGKILL, f"flux {why.get('type', 'exception')}: {why.get('note', 'job never ran')}")
    return None

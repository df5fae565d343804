"""The node-local worker's protocol: one JSON object per line, both ways, over srun's own stdio.

Manager to worker (the worker's stdin)::

    {"op": "start", "id": 7, "argv": [...], "cwd": "...", "env": {...}, "stdout": "...", "stderr": "...",
     "tag": "..."}
    {"op": "signal", "id": 7, "sig": 15}

Worker to manager (its stdout)::

    {"op": "ready", "node": "node2", "pid": 4242}     once, when it reads requests
    {"op": "exit", "id": 7, "code": 0, "pid": 4301}   exit code, or minus the signal that killed it
    {"op": "exit", "id": 7, "error": "..."}           the attempt could not start

Each side writes what it has to say in one write per round (a turn of the manager's loop, a wakeup
of the worker): srun carries the lines over TCP, where a second small write before the first is
acknowledged waits for the acknowledgement (Nagle's algorithm against delayed ACKs: up to 40 ms).

End of file on the worker's stdin means "the manager is gone": the worker kills what it started
and exits.  Nothing but JSON crosses the pipe (no pickle), and the worker never writes the database.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from ensemble.executors.base import Launch

#: Bytes read from a channel at once.
READ_SIZE = 1 << 16
log = logging.getLogger("ensemble.executors")


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def start_request(key: int, launch: Launch) -> dict[str, Any]:
    """The request that starts ``launch`` on a worker (its log files are opened there)."""
    return {"op": "start", "id": key, "argv": launch.argv, "cwd": launch.cwd, "env": launch.env,
            "stdout": launch.stdout, "stderr": launch.stderr, "tag": launch.tag}


class Lines:
    """Splits a byte stream into protocol messages; a line that is not a JSON object is logged and skipped."""

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        *complete, self.partial = (self.partial + data).split(b"\n")
        messages = []
        for line in complete:
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if isinstance(message, dict) and isinstance(message.get("op"), str):
                messages.append(message)
            elif line.strip():
                log.warning("worker protocol: skipped a line that is not a message: %r", line[:200])
        return messages

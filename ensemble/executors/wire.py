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


#: One encoder for every line (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode(message: dict[str, Any]) -> bytes:
    """One protocol line."""
    return _ENCODER.encode(message).encode() + b"\n"


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
        if complete and all(line[:1] == b"{" and line[-1:] == b"}" for line in complete):
            # Every line at once, as one JSON array (a third of the time of a parse per line);
            # kept only if it is one message per line, else each line is judged on its own.
            try:
                parsed = json.loads(b"[" + b",".join(complete) + b"]")
            except ValueError:
                parsed = None
            if parsed is not None and len(parsed) == len(complete) and all(_is_message(m) for m in parsed):
                return parsed
        return [m for m in map(self._one, complete) if m is not None]

    @staticmethod
    def _one(line: bytes) -> dict[str, Any] | None:
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if _is_message(message):
            return message
        if line.strip():
            log.warning("worker protocol: skipped a line that is not a message: %r", line[:200])
        return None


def _is_message(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("op"), str)

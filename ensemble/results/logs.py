"""Where an attempt's output went, and its last lines.

Attempt logs live in the run directory as ``ensemble.step<k>.attempt<n>.out`` and ``.err``
(the ``split`` layout) or one ``ensemble.step<k>.attempt<n>.log`` (``combined``).
"""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path

#: Bytes read from the end of a log for its tail (a log may be gigabytes).
TAIL_BYTES = 1 << 20


def attempt_logs(run_dir: str | os.PathLike, step: int, attempt: int) -> dict[str, str | None]:
    """``{"stdout": path, "stderr": path}`` of one attempt (the same file in the combined layout;
    None where no file was made, e.g. an attempt that never started)."""
    base = Path(run_dir, f"ensemble.step{step}.attempt{attempt}")
    combined = base.with_name(base.name + ".log")
    if combined.exists():
        return {"stdout": str(combined), "stderr": str(combined)}
    out, err = base.with_name(base.name + ".out"), base.with_name(base.name + ".err")
    return {"stdout": str(out) if out.exists() else None, "stderr": str(err) if err.exists() else None}


def tail(path: str | os.PathLike, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (undecodable bytes replaced)."""
    with open(path, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        stream.seek(max(0, size - TAIL_BYTES))
        text = stream.read().decode(errors="replace")
    return list(deque(text.splitlines(), maxlen=lines)) if lines > 0 else []

"""The result file: a run's result written as JSON by any program, in any language.

When a run's last step succeeds, the manager reads ``<run_dir>/<result_file>`` (by default
``ensemble_result.json``; ``result_file=`` at create names another, None reads none).  A file
that is there must hold valid JSON (no NaN or infinity) of at most :data:`MAX_RESULT_BYTES`;
otherwise the run fails with a message naming the file and the problem, rather than finishing
without the result its program meant to give.  No file: the run's result is what
``runtime.set_result`` / ``ensemble result set`` gave, if anything.
"""
from __future__ import annotations

import json
import os

from ensemble.errors import EnsembleError
from ensemble.spec import to_json

#: Largest result file read (results are meant to be summaries, not data sets).
MAX_RESULT_BYTES = 16 * 1024 * 1024


class ResultFileError(EnsembleError):
    """A result file that is there but cannot become the run's result."""


def read_result_file(run_dir: str, name: str | None) -> str | None:
    """The result file's JSON as compact text, or None when there is none (or ``name`` is None)."""
    if name is None:
        return None
    path = os.path.join(run_dir, name)
    if not os.access(path, os.F_OK):  # the usual miss: one system call, no exception
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with open(fd, "rb") as stream:
            data = stream.read(MAX_RESULT_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ResultFileError(f"result file {name}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_RESULT_BYTES:
        raise ResultFileError(f"result file {name}: larger than {MAX_RESULT_BYTES} bytes")
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"result file {name}: not valid JSON ({exc})") from None
    try:
        return to_json(value, f"result file {name}")
    except (ValueError, TypeError) as exc:
        raise ResultFileError(str(exc)) from None

"""``ensemble result``: set or show a run's result from any program (a shell script, C, Fortran).

Inside a run the manager gives every step ``ENSEMBLE_SETUP_DIR``, ``ENSEMBLE_RUN_ID`` and
``ENSEMBLE_BIN`` (this command's absolute path), so ``"$ENSEMBLE_BIN" result set '{"e": -1.5}'``
needs no argument but the JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ensemble.errors import SpecError
from ensemble.manager import Ensemble
from ensemble.prep.hooks import ENV_RUN_ID


def _value(text: str) -> Any:
    """The JSON given: text, ``-`` for standard input, ``@path`` for a file."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as stream:
                text = stream.read()
        except OSError as exc:
            raise SpecError(f"result set: cannot read {text[1:]!r}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SpecError(f"result set: not valid JSON ({exc}): {text[:80]!r}") from None


def _run_id(given: int | None) -> int:
    if given is not None:
        return given
    value = os.environ.get(ENV_RUN_ID)
    if not value or not value.isdigit():
        raise SpecError(f"result set: give --run ID (outside a run {ENV_RUN_ID} is not set)")
    return int(value)


def cmd_result_set(args: argparse.Namespace) -> int:
    Ensemble(args.setup_dir).set_result(_run_id(args.run), _value(args.json))
    return 0


def cmd_result_show(args: argparse.Namespace) -> int:
    ensemble = Ensemble(args.setup_dir)
    run_id = ensemble.check_run_ids([_run_id(args.run)])[0]
    print(json.dumps(ensemble.runs([run_id])[0]["result"]))
    return 0


def register(sub: Any) -> None:
    """Add ``result set`` and ``result show`` to the CLI's subparsers."""
    result = sub.add_parser("result", help="set or show a run's result (JSON)",
                            description="Set or show one run's result.  Inside a run, the run is the one "
                                        "running ($ENSEMBLE_RUN_ID); elsewhere give --run.")
    actions = result.add_subparsers(dest="action", required=True, metavar="ACTION", help="set or show")
    setter = actions.add_parser("set", help="set the run's result",
                                description="Set a run's result: JSON text, '-' to read it from stdin, or "
                                            "@FILE.  While a manager runs it applies the change within a second.")
    setter.add_argument("json", help="the result as JSON, '-' (stdin) or @FILE")
    setter.add_argument("--run", type=int, help="the run id (default: $ENSEMBLE_RUN_ID, inside a run)")
    setter.set_defaults(func=cmd_result_set)
    show = actions.add_parser("show", help="print the run's result as JSON",
                              description="Print one run's result as JSON (null if it has none).")
    show.add_argument("--run", type=int, help="the run id (default: $ENSEMBLE_RUN_ID, inside a run)")
    show.set_defaults(func=cmd_result_show)

"""``ensemble log``: an attempt's output, without hunting for the file."""
from __future__ import annotations

import argparse
from typing import Any

from ensemble.errors import SpecError
from ensemble.manager import Ensemble
from ensemble.results.logs import attempt_logs, tail
from ensemble.spec.files import parse_ids


def _pick(attempts: list[dict[str, Any]], run_id: int, step: int | None, attempt: int | None) -> dict[str, Any]:
    """The attempt asked for: the last one, or the last of ``step``, or exactly ``attempt``."""
    chosen = [a for a in attempts if (step is None or a["step"] == step) and (attempt is None or a["attempt"] == attempt)]
    if not chosen:
        what = "".join(f" {name} {value}" for name, value in (("--step", step), ("--attempt", attempt)) if value is not None)
        raise SpecError(f"log: run {run_id} has no attempt{what or ''} recorded")
    return max(chosen, key=lambda a: a["attempt"])


def cmd_log(args: argparse.Namespace) -> int:
    ensemble = Ensemble(args.setup_dir)
    ids = ensemble.check_run_ids(parse_ids([args.run]))
    if len(ids) != 1:
        raise SpecError(f"log: expected one run id, got {args.run!r}")
    run_id = ids[0]
    chosen = _pick(ensemble.attempts(run_id), run_id, args.step, args.attempt)
    stream = "stdout" if args.stdout else "stderr"
    path = attempt_logs(ensemble.runs([run_id])[0]["run_dir"], chosen["step"], chosen["attempt"])[stream]
    if path is None:
        raise SpecError(f"log: run {run_id} step {chosen['step']} attempt {chosen['attempt']} has no {stream} file")
    if args.path:
        print(path)
        return 0
    print("\n".join(tail(path, args.tail)))
    return 0


def register(sub: Any) -> None:
    """Add the ``log`` subcommand to the CLI's subparsers."""
    log = sub.add_parser("log", help="the tail of an attempt's stderr (or stdout)",
                         description="Print the last lines of one attempt's output; by default the last attempt's "
                                     "stderr.")
    log.add_argument("run", help="the run id")
    log.add_argument("--step", type=int, help="the step (default: the last attempt's)")
    log.add_argument("--attempt", type=int, help="the attempt number (default: the last)")
    which = log.add_mutually_exclusive_group()
    which.add_argument("--stderr", action="store_true", help="the attempt's stderr (the default)")
    which.add_argument("--stdout", action="store_true", help="the attempt's stdout")
    log.add_argument("--tail", type=int, default=20, help="how many last lines (default 20)")
    log.add_argument("--path", action="store_true", help="print the file's path instead of its lines")
    log.set_defaults(func=cmd_log)

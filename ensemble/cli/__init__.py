"""The ``ensemble`` command line: a thin layer over :class:`ensemble.Ensemble`.

User errors, and a full file system, print one line (``ensemble: error: ...``)
and exit with status 2.  A reader that closes standard output early (``| head``)
ends the command quietly with status 141, as if SIGPIPE had killed it.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ensemble import __version__
from ensemble.cli import create, dashboard, dryrun, execute, info, log, plot, result, write
from ensemble.errors import EnsembleError
from ensemble.manager import DEFAULT_SETUP_DIR, Ensemble
from ensemble.results.failures import failure_report
from ensemble.results.logs import attempt_logs
from ensemble.spec.files import parse_ids
from ensemble.status import RunStatus
from ensemble.store import DB_NAME, is_disk_full

#: Exit status for user errors and a full file system.
EXIT_USER_ERROR = 2
#: Exit status when standard output is closed early: 128 + SIGPIPE, what a shell reports for ``cat | head``.
EXIT_BROKEN_PIPE = 141
#: The environment variable naming the setup directory when ``--setup-dir`` is not given (steps
#: get it from their manager, so ``ensemble`` inside a run talks to its own ensemble).
SETUP_DIR_ENV = "ENSEMBLE_SETUP_DIR"
SETUP_DIR_HELP = f"setup directory (default ${SETUP_DIR_ENV}, else {DEFAULT_SETUP_DIR}); before or after the command"
#: Commands that write into the setup directory (the database, logs, the inbox).
SETUP_WRITERS = ("create", "add", "requeue", "dequeue", "execute", "submit")


def _open(args: argparse.Namespace) -> Ensemble:
    return Ensemble(args.setup_dir)


def cmd_status(args: argparse.Namespace) -> int | None:
    ensemble = _open(args)
    if args.watch:
        from ensemble.watch.terminal import watch

        return watch(ensemble, args.interval)
    if args.ids:
        rows = [{"run_id": r["id"], "status": r["status"].label, "running": r["claimed_by"] is not None,
                 "step": r["step"], "restarts": r["restarts"], "run_dir": r["run_dir"], "message": r["message"]}
                for r in ensemble.runs(ensemble.check_run_ids(parse_ids(args.ids)))]
        if args.json:
            print(json.dumps(rows, indent=1))
        else:
            print_table(rows)
        return
    counts = ensemble.status_counts()
    if args.json:
        print(json.dumps(counts))
        return
    waiting = counts["queued"] - counts["running"]
    print(f"{'waiting':>8}: {waiting}\n{'running':>8}: {counts['running']}")
    for label in [s.label for s in RunStatus if s is not RunStatus.QUEUED] + ["total"]:
        print(f"{label:>8}: {counts[label]}")
    report = failure_report(ensemble.store)
    if report:
        print("\n".join(["", *report]))


def print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no runs")
        return
    columns = list(rows[0])
    text = [[("" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in text:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def cmd_progress(args: argparse.Namespace) -> None:
    done, total = _open(args).progress()
    if args.json:
        print(json.dumps({"completed": done, "total": total}))
    else:
        percent = 100.0 * done / total if total else 100.0
        print(f"{done}/{total} runs completed ({percent:.1f}%)")




def cmd_requeue(args: argparse.Namespace) -> None:
    _open(args).requeue_runs(parse_ids(args.ids), hard=args.hard)


def cmd_dequeue(args: argparse.Namespace) -> None:
    _open(args).dequeue_runs(parse_ids(args.ids))


def cmd_rundirs(args: argparse.Namespace) -> None:
    pairs = _open(args).run_dirs(nonexistent=args.all)
    if args.json:
        print(json.dumps({str(i): d for i, d in pairs}))
    else:
        for run_id, run_dir in pairs:
            print(f"{run_id}\t{run_dir}")


def cmd_attempts(args: argparse.Namespace) -> None:
    ensemble = _open(args)
    ids = ensemble.check_run_ids(parse_ids(args.ids))
    run_dirs = {r["id"]: r["run_dir"] for r in ensemble.runs(ids)}
    rows = [{**a, "logs": attempt_logs(run_dirs[a["run_id"]], a["step"], a["attempt"])}
            for run_id in ids for a in ensemble.attempts(run_id)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print_table([{"run_id": a["run_id"], "step": a["step"], "attempt": a["attempt"], "outcome": a["outcome"],
                  "exit": a["exit_code"] if a["signal"] is None else f"signal {a['signal']}",
                  "seconds": None if a["end"] is None else f"{a['end'] - a['start']:.3f}", "host": a["host"],
                  **({"job": a["job"]} if any(r["job"] for r in rows) else {}),
                  "command": " ".join(a["command"]), "stderr": a["logs"]["stderr"]} for a in rows])


def cmd_clear(args: argparse.Namespace) -> None:
    setup = Path(args.setup_dir).resolve()
    if not (setup / DB_NAME).is_file():
        print(f"no ensemble at {setup}: nothing removed")
        return
    Ensemble.clear(setup)
    print(f"removed {setup} (database, logs, inbox, batch scripts); run directories are kept")


def _register_status(sub: Any) -> None:
    status = sub.add_parser(
        "status", help="counts per status, or a table of the given runs",
        description="Counts per status: 'waiting' and 'running' together are the queued runs (a run stays queued "
                    "until it completes; a queued run a manager has started is running). --json and the Python API "
                    "keep the reference's counts: 'queued' includes 'running'.")
    status.add_argument("ids", nargs="*", help="run ids or ranges (3-7); without them, counts")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.add_argument("--watch", action="store_true",
                        help="a live view (progress, runs/s, ETA, running runs, last failures) until nothing is queued")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes of --watch (default 2)")
    status.set_defaults(func=cmd_status)

    progress = sub.add_parser("progress", help="completed / total runs")
    progress.add_argument("--json", action="store_true", help="print JSON instead of text")
    progress.set_defaults(func=cmd_progress)


def _register_runs(sub: Any) -> None:
    requeue = sub.add_parser("requeue", help="queue completed runs again")
    requeue.add_argument("ids", nargs="+", help="run ids or ranges (3-7)")
    requeue.add_argument("--hard", action="store_true", help="restart from step 0")
    requeue.set_defaults(func=cmd_requeue)

    dequeue = sub.add_parser("dequeue", help="kill queued or running runs")
    dequeue.add_argument("ids", nargs="+", help="run ids or ranges (3-7)")
    dequeue.set_defaults(func=cmd_dequeue)

    rundirs = sub.add_parser("rundirs", help="list run directories")
    rundirs.add_argument("--json", action="store_true", help="print JSON instead of text")
    rundirs.add_argument("--all", action="store_true", help="include directories not created yet")
    rundirs.set_defaults(func=cmd_rundirs)

    attempts = sub.add_parser("attempts", help="every recorded attempt of the given runs")
    attempts.add_argument("ids", nargs="+", help="run ids or ranges (3-7)")
    attempts.add_argument("--json", action="store_true", help="print the full records as JSON")
    attempts.set_defaults(func=cmd_attempts)


def _register_clear(sub: Any) -> None:
    clear = sub.add_parser("clear", help="delete the setup directory (run directories are kept)")
    clear.set_defaults(func=cmd_clear)


#: Every command, in the order ``ensemble --help`` lists them, with the function that adds its
#: parser (some add two or three commands).
COMMANDS: dict[str, Callable[[Any], None]] = {
    "create": create.register, "add": create.register, "status": _register_status, "progress": _register_status,
    "write": write.register, "dryrun": dryrun.register, "requeue": _register_runs, "dequeue": _register_runs,
    "rundirs": _register_runs, "attempts": _register_runs, "log": log.register, "result": result.register,
    "info": info.register, "plot": plot.register, "dashboard": dashboard.register, "execute": execute.register,
    "submit": execute.register, "stop": execute.register, "clear": _register_clear,
}


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names, where it names one before any other option (else ``None``)."""
    tokens = iter(argv)
    for token in tokens:
        if token == "--setup-dir":
            next(tokens, None)
        elif not token.startswith("--setup-dir="):
            return token if token in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser.  Given the arguments, only the parsers of the command they name
    are built (building all 19 takes about 6 ms of each command's start); without them, or when
    they name none (``--help``, a typo), all are, so that help and errors list every command."""
    parser = argparse.ArgumentParser(prog="ensemble", description="Create, run and inspect ensembles of runs.")
    parser.add_argument("--version", action="version", version=f"ensemble {__version__}",
                        help="print the version and exit")
    parser.add_argument("--setup-dir", default=os.environ.get(SETUP_DIR_ENV) or DEFAULT_SETUP_DIR, help=SETUP_DIR_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = None if argv is None else _command_in(argv)
    registrars = [COMMANDS[command]] if command else COMMANDS.values()
    for register in dict.fromkeys(registrars):
        register(sub)
    for each in sub.choices.values():  # --setup-dir after the command name too
        each.add_argument("--setup-dir", default=argparse.SUPPRESS, help=SETUP_DIR_HELP)
    return parser


def _full_place(args: argparse.Namespace, exc: BaseException) -> str:
    """Where the command was writing when the file system filled up."""
    setup = os.path.abspath(args.setup_dir)
    if isinstance(exc, sqlite3.Error):
        return f"the setup directory {setup!r}"
    if exc.filename:
        return repr(os.path.abspath(exc.filename))
    if args.command == "write" and args.output not in (None, "-"):
        return repr(os.path.abspath(args.output))
    if args.command == "dryrun":
        return "the run directories"
    if args.command in SETUP_WRITERS:
        return f"the setup directory {setup!r}"
    return "standard output"


def _error(message: str) -> int:
    print(f"ensemble: error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


#: API argument names whose CLI flag is not simply their dashed form.
RENAMED_FLAGS = {"app_is_batch_script": "--no-batch-script", "log_layout": "--logs"}


def _as_flag(parser: argparse.ArgumentParser, command: str, message: str) -> str:
    """A message that starts with an API argument name (``max_concurrency: ...``) names the
    command's CLI flag instead (``--max-concurrency: ...``)."""
    name, colon, rest = message.partition(":")
    if not colon or not name.isidentifier():
        return message
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    flags = {a.dest: max(a.option_strings, key=len) for a in sub.choices[command]._actions  # noqa: SLF001
             if a.option_strings and a.dest != "help"}
    flag = flags.get(name) or (RENAMED_FLAGS[name] if RENAMED_FLAGS.get(name) in flags.values() else None)
    return f"{flag}:{rest}" if flag else message


def _stdout_closed() -> int:
    """Point standard output at /dev/null, so the interpreter's final flush is quiet too."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        code = args.func(args) or 0
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    except (EnsembleError, ValueError, TypeError) as exc:
        return _error(_as_flag(parser, args.command, str(exc)))
    except (OSError, sqlite3.OperationalError) as exc:
        if is_disk_full(exc):
            return _error(f"no space left on the file system holding {_full_place(args, exc)} "
                          f"({getattr(exc, 'strerror', None) or exc})")
        if isinstance(exc, sqlite3.Error):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        return _error(f"{exc.strerror or exc}{where}")
    except KeyboardInterrupt:
        print("ensemble: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ensemble import __version__, cliexec, clilog, cliresult, cliwrite
from ensemble.cliinput import parse_ids, read_samples
from ensemble.config import DEFAULT_RESULT_FILE
from ensemble.errors import EnsembleError
from ensemble.logs import attempt_logs
from ensemble.manager import DEFAULT_SETUP_DIR, Ensemble
from ensemble.spec import Run
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


def runs_from_csv(args: argparse.Namespace) -> list[Run]:
    runs = []
    for sample in read_samples(args.samples):
        try:
            run_args = args.args.format(**sample) if args.args else None
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise EnsembleError(f"--args: {args.args!r} cannot be formatted with sample {sample}: {exc!r}") from None
        runs.append(Run(sample, run_args, tasks=args.tasks, cores_per_task=args.cores_per_task,
                        gpus_per_task=args.gpus_per_task, timeout=args.timeout))
    return runs


def _optional_int(text: str) -> int | None:
    if text.lower() in ("none", "unlimited"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def cmd_create(args: argparse.Namespace) -> None:
    make = Ensemble.create_overwrite if args.overwrite else Ensemble.create
    ensemble = make(
        application=args.application, runs=runs_from_csv(args), run_parse=args.run_parse or None,
        run_copy=args.run_copy or None, run_symlink=args.run_symlink or None, run_dir_names=args.run_dir_names,
        app_interface=args.app_interface, setup_dir=args.setup_dir, max_restarts=args.max_restarts,
        max_failed_runs=args.max_failed_runs, app_is_batch_script=args.batch_script, abort_on=args.abort_on,
        template_engine=args.template_engine, strict_templates=args.strict_templates,
        result_file=None if args.result_file == "none" else args.result_file)
    print(f"created ensemble of {ensemble.count_by_status()} runs in {ensemble.setup_dir}")


def cmd_add(args: argparse.Namespace) -> None:
    runs = runs_from_csv(args)
    _open(args).add_runs(runs)
    print(f"added {len(runs)} runs")


def _open(args: argparse.Namespace) -> Ensemble:
    return Ensemble(args.setup_dir)


def cmd_status(args: argparse.Namespace) -> None:
    ensemble = _open(args)
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
    report = clilog.failure_report(ensemble)
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


def cmd_dryrun(args: argparse.Namespace) -> None:
    ensemble = _open(args)
    prepared = ensemble.dry_run(*parse_ids(args.ids), verbosity=args.verbose)
    print(f"prepared {len(prepared)} run directories")
    for run in [] if args.verbose else prepared[:10]:
        print(f"  {run.describe()}")
    if len(prepared) > 10:
        print(f"  ... and {len(prepared) - 10} more (ensemble rundirs --all lists them)")


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


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", help="CSV file: a header of sample labels, one row per run")
    parser.add_argument("--args", help="arguments for the application, formatted with the sample: '-x {x}'")
    parser.add_argument("--tasks", type=int, default=1, help="tasks (MPI ranks) per run (default 1)")
    parser.add_argument("--cores-per-task", type=int, default=1, help="cores per task (default 1)")
    parser.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per task (default 0)")
    parser.add_argument("--timeout", type=float, default=0, help="minutes per step (0: none)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ensemble", description="Create, run and inspect ensembles of runs.")
    parser.add_argument("--version", action="version", version=f"ensemble {__version__}",
                        help="print the version and exit")
    parser.add_argument("--setup-dir", default=os.environ.get(SETUP_DIR_ENV) or DEFAULT_SETUP_DIR, help=SETUP_DIR_HELP)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    create = sub.add_parser("create", help="create an ensemble from a CSV of samples")
    _add_run_options(create)
    create.add_argument("--application", required=True, help="program every run executes")
    create.add_argument("--run-parse", action="append", help="file/glob parsed into each run dir (repeatable)")
    create.add_argument("--run-copy", action="append", help="file/glob copied into each run dir (repeatable)")
    create.add_argument("--run-symlink", action="append", help="file/glob symlinked into each run dir (repeatable)")
    create.add_argument("--run-dir-names", help="format string for run directories, default runs/{run_id}")
    create.add_argument("--app-interface", help="Python file with hooks")
    create.add_argument("--max-restarts", type=_optional_int, default=0, help="restarts per run, or 'none'")
    create.add_argument("--max-failed-runs", type=_optional_int, default=None,
                        help="stop launching once more runs than this failed (default: never)")
    create.add_argument("--no-batch-script", dest="batch_script", action="store_false",
                        help="the application is a program, not a script to parse")
    create.add_argument("--abort-on", type=int, action="append", help="exit code that aborts a run (repeatable)")
    create.add_argument("--template-engine", choices=("tokens", "jinja"), default="tokens",
                        help="%%%%name%%%% tokens (default) or Jinja2 templates")
    create.add_argument("--no-strict-templates", dest="strict_templates", action="store_false",
                        help="leave unknown tokens as they are instead of refusing them")
    create.add_argument("--result-file", default=DEFAULT_RESULT_FILE,
                        help="JSON file in each run directory read as its result when the run succeeds "
                             f"(default {DEFAULT_RESULT_FILE}; 'none': read none)")
    create.add_argument("--overwrite", action="store_true", help="replace an existing ensemble")
    create.set_defaults(func=cmd_create)

    add = sub.add_parser("add", help="add runs from a CSV of samples")
    _add_run_options(add)
    add.set_defaults(func=cmd_add)

    status = sub.add_parser(
        "status", help="counts per status, or a table of the given runs",
        description="Counts per status: 'waiting' and 'running' together are the queued runs (a run stays queued "
                    "until it completes; a queued run a manager has started is running). --json and the Python API "
                    "keep the reference's counts: 'queued' includes 'running'.")
    status.add_argument("ids", nargs="*", help="run ids or ranges (3-7); without them, counts")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(func=cmd_status)

    progress = sub.add_parser("progress", help="completed / total runs")
    progress.add_argument("--json", action="store_true", help="print JSON instead of text")
    progress.set_defaults(func=cmd_progress)

    cliwrite.register(sub)

    dryrun = sub.add_parser("dryrun", help="prepare run directories without running anything")
    dryrun.add_argument("ids", nargs="*", help="run ids or ranges (3-7); default: every run")
    dryrun.add_argument("-v", "--verbose", action="count", default=0, help="print each run directory prepared")
    dryrun.set_defaults(func=cmd_dryrun)

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
    clilog.register(sub)
    cliresult.register(sub)
    cliexec.register(sub)

    clear = sub.add_parser("clear", help="delete the setup directory (run directories are kept)")
    clear.set_defaults(func=cmd_clear)
    for command in sub.choices.values():  # --setup-dir after the command name too
        command.add_argument("--setup-dir", default=argparse.SUPPRESS, help=SETUP_DIR_HELP)
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
RENAMED_FLAGS = {"app_is_batch_script": "--no-batch-script", "strict_templates": "--no-strict-templates",
                 "log_layout": "--logs", "timeout": "--timeout"}


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
    parser = build_parser()
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

"""``ensemble create`` and ``ensemble add``: runs from a CSV of samples."""
from __future__ import annotations

import argparse
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.manager import Ensemble
from ensemble.spec import Run
from ensemble.spec.config import DEFAULT_RESULT_FILE
from ensemble.spec.files import read_samples


def runs_from_csv(args: argparse.Namespace) -> list[Run]:
    """One Run per row of the samples file, with a progress bar on a terminal (see :mod:`ensemble.watch.progress`)."""
    from ensemble.watch import progress

    with progress.bar(f"reading {args.samples}", quiet=args.quiet):
        samples = read_samples(args.samples)
    runs = []
    with progress.bar("building runs", len(samples), quiet=args.quiet) as advance:
        for sample in samples:
            try:
                run_args = args.args.format(**sample) if args.args else None
            except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
                raise EnsembleError(f"--args: {args.args!r} cannot be formatted with sample {sample}: {exc!r}") from None
            runs.append(Run(sample, run_args, tasks=args.tasks, cores_per_task=args.cores_per_task,
                            gpus_per_task=args.gpus_per_task, timeout=args.timeout))
            advance(1)
    return runs


def _optional_int(text: str) -> int | None:
    if text.lower() in ("none", "unlimited"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def cmd_create(args: argparse.Namespace) -> None:
    from ensemble.watch import progress

    make = Ensemble.create_overwrite if args.overwrite else Ensemble.create
    runs = runs_from_csv(args)
    with progress.bar("checking runs", len(runs), quiet=args.quiet) as advance:
        ensemble = make(
            application=args.application, runs=runs, run_parse=args.run_parse or None,
            run_copy=args.run_copy or None, run_symlink=args.run_symlink or None, run_dir_names=args.run_dir_names,
            app_interface=args.app_interface, setup_dir=args.setup_dir, max_restarts=args.max_restarts,
            max_failed_runs=args.max_failed_runs, app_is_batch_script=args.batch_script, abort_on=args.abort_on,
            template_engine=args.template_engine, strict_templates=args.strict_templates,
            result_file=None if args.result_file == "none" else args.result_file, progress=advance)
    print(f"created ensemble of {ensemble.count_by_status()} runs in {ensemble.setup_dir}")


def cmd_add(args: argparse.Namespace) -> None:
    from ensemble.watch import progress

    runs = runs_from_csv(args)
    ensemble = Ensemble(args.setup_dir)
    with progress.bar("checking runs", len(runs), quiet=args.quiet) as advance:
        ensemble.add_runs(runs, progress=advance)
    print(f"added {len(runs)} runs")


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    """``-q``/``--quiet`` for a command that draws progress on a terminal."""
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar (there is none either when standard error is not a terminal)")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", help="CSV file: a header of sample labels, one row per run")
    parser.add_argument("--args", help="arguments for the application, formatted with the sample: '-x {x}'")
    parser.add_argument("--tasks", type=int, default=1, help="tasks (MPI ranks) per run (default 1)")
    parser.add_argument("--cores-per-task", type=int, default=1, help="cores per task (default 1)")
    parser.add_argument("--gpus-per-task", type=int, default=0, help="GPUs per task (default 0)")
    parser.add_argument("--timeout", type=float, default=0, help="minutes per step (0: none)")


def register(sub: Any) -> None:
    """Add the ``create`` and ``add`` subcommands to the CLI's subparsers."""
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
    add_quiet_option(create)
    create.set_defaults(func=cmd_create)

    add = sub.add_parser("add", help="add runs from a CSV of samples")
    _add_run_options(add)
    add_quiet_option(add)
    add.set_defaults(func=cmd_add)

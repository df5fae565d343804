"""``ensemble write``: a summary of the runs as CSV, JSON, YAML or Parquet, written atomically."""
from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ensemble.cli.create import add_quiet_option
from ensemble.errors import EnsembleError
from ensemble.manager import Ensemble


def _to_file(output: str | None) -> bool:
    """Whether the summary goes to a file (``-o FILE``, or standard output redirected to one), not to
    a terminal or a pipe, where a spinner on the terminal would mix with the summary."""
    if output not in (None, "-"):
        return True
    try:
        return stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError):
        return False


def cmd_write(args: argparse.Namespace) -> None:
    """Write the summary, with a spinner on a terminal while it goes to a file."""
    from ensemble.watch import progress

    ensemble = Ensemble(args.setup_dir)
    quiet = args.quiet or not _to_file(args.output)
    with progress.bar(f"writing {ensemble.count_by_status()} runs as {args.format}", quiet=quiet):
        _write(ensemble, args)


def _write(ensemble: Ensemble, args: argparse.Namespace) -> None:
    """Write the summary asked for, to standard output or atomically to -o FILE."""
    options = {"statuses": _listed(args.status)}
    if args.columns is not None:
        if args.format in ("json", "yaml"):
            raise EnsembleError("--columns: only csv and parquet have columns (json and yaml keep each run's "
                                "sample and result nested)")
        options["columns"] = _listed(args.columns)
    if args.format == "parquet":
        if args.output in (None, "-"):
            raise EnsembleError("--output: parquet is binary; name the file to write with -o FILE")
        _write_atomically(args.output, lambda tmp: ensemble.write_parquet(tmp, **options))
        return
    writer = {"csv": ensemble.write_csv, "json": ensemble.write_json, "yaml": ensemble.write_yaml}[args.format]
    if args.output in (None, "-"):
        writer(sys.stdout, **options)
        return
    _write_atomically(args.output, lambda tmp: _write_text(tmp, lambda stream: writer(stream, **options)))


def _listed(text: str | None) -> list[str] | None:
    """The items of a comma-separated option (None when it is not given)."""
    return None if text is None else [item.strip() for item in text.split(",") if item.strip()]


def _write_text(path: Path, write: Callable[[IO[str]], None]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as stream:
        write(stream)


def _write_atomically(output: str, write: Callable[[Path], None]) -> None:
    """``write(path)`` a temporary file beside ``output``, then rename it into place."""
    tmp = Path(output + ".tmp")
    try:
        write(tmp)
        tmp.replace(output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def register(sub: Any) -> None:
    """Add the ``write`` subcommand to the CLI's subparsers."""
    write = sub.add_parser("write", help="write a summary of every run")
    write.add_argument("format", choices=("csv", "json", "yaml", "parquet"), help="the summary's format")
    write.add_argument("-o", "--output", help="file to write (default: standard output; parquet needs one)")
    write.add_argument("--columns", help="comma-separated columns to write, in this order (csv, parquet; "
                                         "run_id always comes first)")
    write.add_argument("--status", help="comma-separated statuses: only runs with one of them (success,failure)")
    add_quiet_option(write)
    write.set_defaults(func=cmd_write)

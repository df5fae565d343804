"""Asking Slurm for an allocation: the batch script of :meth:`Ensemble.execute_alloc`, ``sbatch``, ``scancel``.

The script is plain text in ``<setup_dir>/batch/ensemble-<n>.sbatch``: ``#SBATCH`` lines for the
allocation, then one line that ``exec``\\ s ``ensemble execute --block`` with this interpreter, so
Slurm's SIGTERM reaches the manager itself.  Follow-up allocations (repeats) submit the same file
again, so an edit to it applies to every later allocation.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError, SpecError, SpecTypeError
from ensemble.providers.slurm import SCONTROL_TIMEOUT
from ensemble.spec.arguments import count_arg
from ensemble.spec.options import LAUNCHER_CHOICES, manager_options

BATCH_DIR = "batch"
#: Characters an ``#SBATCH`` value may hold (partition, account and job names).
_NAME = re.compile(r"^[A-Za-z0-9_.+:@%=,/-]+$")


@dataclass(frozen=True)
class AllocRequest:
    """A checked allocation request and the options of the manager that runs inside it."""

    nodes: int
    partition: str | None
    bank: str | None
    name: str
    timeout: int | None
    repeats: int
    manager: dict[str, Any]
    launcher: str
    #: Allocations kept queued or running at once (automatic allocations), or None for one chain.
    max_allocations: int | None = None


def _word(name: str, value: Any, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise SpecTypeError(f"{name}: expected a string, got {value!r}")
    if not _NAME.match(value):
        raise SpecError(f"{name}: expected a Slurm name (letters, digits, _.+:@%=,/-), got {value!r}")
    return value


def check_request(nodes: Any = 1, partition: Any = None, bank: Any = None, name: Any = "ensemble",
                  timeout: Any = None, repeats: Any = 0, parallelism: Any = None, early_stop: Any = None,
                  allow_multiple: Any = False, max_concurrency: Any = None, launcher: Any = "auto",
                  mpi: Any = None, kill_grace: Any = 3.0, log_layout: Any = "split",
                  max_allocations: Any = None) -> AllocRequest:
    """Every argument of :meth:`Ensemble.execute_alloc` checked; SpecError/SpecTypeError naming the
    field.  The launcher is checked by name only: the batch job detects its own.  Automatic
    allocations (``max_allocations``) share the work, so their managers always allow several."""
    if launcher not in LAUNCHER_CHOICES:
        raise SpecError(f"launcher: expected one of {', '.join(LAUNCHER_CHOICES)}, got {launcher!r}")
    manager = manager_options(parallelism, allow_multiple, max_concurrency, kill_grace, log_layout, mpi, early_stop)
    minutes = None if timeout is None else count_arg("timeout", timeout, 1)
    if minutes is not None and manager["early_stop"] is not None and manager["early_stop"] >= minutes:
        raise SpecError(f"early_stop: {early_stop!r} minutes leaves no time to run in a {minutes}-minute allocation")
    pool = None if max_allocations is None else count_arg("max_allocations", max_allocations, 1)
    if pool is not None and repeats:
        raise SpecError(f"repeats: automatic allocations (max_allocations={pool}) submit allocations while work "
                        f"waits; they take no repeats, got repeats={repeats!r}")
    if pool is not None:
        manager["allow_multiple"] = True
    return AllocRequest(nodes=count_arg("nodes", nodes, 1), partition=_word("partition", partition),
                        bank=_word("bank", bank), name=_word("name", name, optional=False) or "",
                        timeout=minutes, repeats=count_arg("repeats", repeats, 0), manager=manager, launcher=launcher,
                        max_allocations=pool)


def execute_argv(setup_dir: Path, request: AllocRequest, *extra: str) -> list[str]:
    """The command the batch script execs: this interpreter's ``ensemble execute --block``
    (``extra``: more options, such as ``--pool`` or ``--run-range``)."""
    opts = request.manager
    argv = [sys.executable, "-m", "ensemble", "--setup-dir", str(setup_dir), "execute", "--block",
            "--launcher", request.launcher, "--kill-grace", f"{opts['kill_grace']:g}", "--logs", opts["log_layout"]]
    for flag, key in (("--parallelism", "parallelism"), ("--max-concurrency", "max_concurrency"),
                      ("--early-stop", "early_stop"), ("--mpi", "mpi")):
        if opts[key] is not None and not (key == "parallelism" and opts[key] == 1):
            argv += [flag, f"{opts[key]:g}" if isinstance(opts[key], float) else str(opts[key])]
    if opts["allow_multiple"]:
        argv.append("--allow-multiple")
    return argv + list(extra)


def render_script(setup_dir: Path, request: AllocRequest, exec_line: str | None = None,
                  directives: tuple[str, ...] = (), log_name: str = "slurm-%j.out",
                  body: tuple[str, ...] = ()) -> str:
    """The batch script's text (``setup_dir`` absolute); ``exec_line`` replaces the line that
    execs the manager (a Flux instance around it: :func:`ensemble.flux.batch.flux_start_line`);
    ``directives`` are more ``#SBATCH`` options and ``body`` lines before the exec line."""
    log = shlex.quote(str(setup_dir / "logs" / log_name))
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={request.name}",
             f"#SBATCH --nodes={request.nodes}",
             "#SBATCH --exclusive",
             *([f"#SBATCH --time={request.timeout}"] if request.timeout is not None else []),
             *([f"#SBATCH --partition={request.partition}"] if request.partition else []),
             *([f"#SBATCH --account={request.bank}"] if request.bank else []),
             f"#SBATCH --output={log}",
             f"#SBATCH --error={log}",
             *(f"#SBATCH {option}" for option in directives),
             "#",
             "# Written by ensemble (Ensemble.execute_alloc / ensemble submit).  Edit freely: follow-up",
             "# allocations (repeats) submit this same file.  exec: Slurm's signals reach the manager.",
             *body,
             exec_line or "exec " + shlex.join(execute_argv(setup_dir, request)),
             ""]
    return "\n".join(lines)


def write_script(setup_dir: Path, text: str, suffix: str = ".sbatch") -> Path:
    """Write the script as ``<setup_dir>/batch/ensemble-<n><suffix>`` (the next free n), atomically."""
    directory = setup_dir / BATCH_DIR
    directory.mkdir(exist_ok=True)
    taken = [int(m.group(1)) for p in directory.iterdir() if (m := re.fullmatch(r"ensemble-(\d+)\.\w+", p.name))]
    path = directory / f"ensemble-{max(taken, default=0) + 1}{suffix}"
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return path


def _client_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment for sbatch: inside a job, the job's own ``SLURM_*`` variables (node list,
    CPUs, ...) must not leak into the job being submitted; ``SLURM_CONF`` stays."""
    return {k: v for k, v in env.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}


def client_command(argv: list[str]) -> str:
    """Output of a Slurm client command run with :func:`_client_env`; EnsembleError naming it."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=SCONTROL_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False, env=_client_env(os.environ))
    except FileNotFoundError:
        raise EnsembleError(f"{argv[0]}: command not found (is Slurm installed on this machine?)") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnsembleError(f"{argv[0]} could not run: {exc}") from None
    if done.returncode != 0:
        what = "rejected the job" if argv[0] == "sbatch" else "failed"
        raise EnsembleError(f"{argv[0]} {what} ({done.returncode}): "
                            f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def sbatch(script: Path | str, after: str | None = None, hold: bool = False) -> str:
    """Submit ``script`` (held until job ``after`` ends, if given; held until :func:`release`
    with ``hold``); return the job id."""
    argv = ["sbatch", "--parsable", *([f"--dependency=afterany:{after}"] if after else []),
            *(["--hold"] if hold else []), str(script)]
    job = client_command(argv).strip().split(";")[0]
    if not job.isdigit():
        raise EnsembleError(f"sbatch: expected a job id, got {job!r}")
    return job


def release(job_id: str) -> None:
    """Let a job submitted with ``hold`` start."""
    client_command(["scontrol", "release", job_id])


def scancel(job_id: str) -> None:
    """Cancel one job (ours: its id comes from the store)."""
    client_command(["scancel", job_id])

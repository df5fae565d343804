"""Asking Flux for an allocation (``flux batch``), and starting a Flux instance inside a Slurm job.

``flux batch`` makes a new Flux instance of the requested nodes and runs the script as its initial
program: the manager inside finds ``FLUX_URI`` set and runs every step as a job of that instance.
In a Slurm job of an ensemble created with ``use_flux``, the batch script's one line becomes::

    exec srun -N <nodes> --ntasks-per-node=1 -c "$SLURM_CPUS_ON_NODE" --mpi=none <flux> start <ensemble ...>

one broker per node with all of the node's CPUs, bootstrapped through Slurm's PMI, the manager the
instance's initial program (the way LLNL's documentation starts Flux under Slurm).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError, SpecError
from ensemble.providers.sbatch import AllocRequest, execute_argv
from ensemble.providers.slurm import SCONTROL_TIMEOUT


def flux_program(use_flux: Any) -> str:
    """The ``flux`` command ``use_flux`` names: a path to it, or ``flux`` from PATH for True."""
    if isinstance(use_flux, str):
        path = Path(use_flux).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SpecError(f"use_flux: expected the path of an executable flux command, got {use_flux!r}")
        return str(path.resolve())
    return "flux"


def flux_start_line(setup_dir: Path, request: AllocRequest, use_flux: Any, *extra: str) -> str:
    """The batch script's ``exec`` line that runs the manager inside a Flux instance over the job's
    nodes (``extra``: more options of ``ensemble execute``)."""
    srun = shlex.join(["srun", "-N", str(request.nodes), "--ntasks-per-node=1"])
    rest = shlex.join(["--mpi=none", flux_program(use_flux), "start", *execute_argv(setup_dir, request, *extra)])
    return f'exec {srun} -c "$SLURM_CPUS_ON_NODE" {rest}'


def render_flux_script(setup_dir: Path, request: AllocRequest, *extra: str) -> str:
    """The ``flux batch`` script (``setup_dir`` absolute): ``-N`` nodes, ``-t`` minutes, ``-q`` queue
    (the request's partition), ``--bank``, ``--job-name``, both streams in ``logs/flux-{{id}}.out``."""
    log = shlex.quote(str(setup_dir / "logs" / "flux-{{id}}.out"))
    lines = ["#!/bin/bash",
             f"#flux: --job-name={request.name}",
             f"#flux: -N {request.nodes}",
             "#flux: --exclusive",
             *([f"#flux: -t {request.timeout}m"] if request.timeout is not None else []),
             *([f"#flux: -q {request.partition}"] if request.partition else []),
             *([f"#flux: --bank={request.bank}"] if request.bank else []),
             f"#flux: --output={log}",
             f"#flux: --error={log}",
             "#",
             "# Written by ensemble.  The manager runs as the new instance's initial program.",
             "exec " + shlex.join(execute_argv(setup_dir, request, *extra)),
             ""]
    return "\n".join(lines)


def submit_flux(script: Path, use_flux: Any = True) -> str:
    """``flux batch script``; the job id as Flux prints it in ASCII (``FLUX_F58_FORCE_ASCII``)."""
    program = flux_program(use_flux)
    if program == "flux" and not shutil.which("flux"):
        raise EnsembleError("flux: command not found (is Flux installed on this machine?)")
    try:
        done = subprocess.run([program, "batch", str(script)], capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=SCONTROL_TIMEOUT, check=False, env={**os.environ, "FLUX_F58_FORCE_ASCII": "1"})
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnsembleError(f"flux batch could not run: {exc}") from None
    if done.returncode != 0:
        raise EnsembleError(f"flux batch rejected the job ({done.returncode}): "
                            f"{done.stderr.strip() or done.stdout.strip()}")
    job = done.stdout.strip().splitlines()[-1:] if done.stdout.strip() else []
    if not job or not job[0].startswith("f"):
        raise EnsembleError(f"flux batch: expected a job id, got {done.stdout.strip()!r}")
    return job[0]

"""Asking LSF for an allocation: the ``#BSUB`` script and ``bsub < script``.

:meth:`Ensemble.execute_alloc` uses them where ``bsub`` is on PATH and ``sbatch`` is not.  The
request is the one :func:`~ensemble.providers.sbatch.check_request` checks, and the script
execs the same ``ensemble execute --block`` line as the Slurm one.
"""
from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

from ensemble.errors import EnsembleError
from ensemble.providers.sbatch import AllocRequest, execute_argv
from ensemble.providers.slurm import SCONTROL_TIMEOUT

#: What bsub prints on success: ``Job <123> is submitted to queue <pbatch>.``
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted")


def render_lsf_script(setup_dir: Path, request: AllocRequest) -> str:
    """The batch script's text (``setup_dir`` absolute): ``-nnodes``, ``-W`` minutes, ``-G`` bank,
    ``-q`` queue (the request's partition), ``-J`` name, both streams in ``logs/lsf-%J.out``."""
    log = shlex.quote(str(setup_dir / "logs" / "lsf-%J.out"))
    lines = ["#!/bin/bash",
             f"#BSUB -J {request.name}",
             f"#BSUB -nnodes {request.nodes}",
             *([f"#BSUB -W {request.timeout}"] if request.timeout is not None else []),
             *([f"#BSUB -q {request.partition}"] if request.partition else []),
             *([f"#BSUB -G {request.bank}"] if request.bank else []),
             f"#BSUB -o {log}",
             f"#BSUB -e {log}",
             "#",
             "# Written by ensemble.  exec: LSF's signals reach the manager.",
             "exec " + shlex.join(execute_argv(setup_dir, request)),
             ""]
    return "\n".join(lines)


def parse_bsub_output(text: str) -> str:
    """The job id in bsub's answer; EnsembleError quoting it when there is none."""
    match = _SUBMITTED.search(text)
    if match is None:
        raise EnsembleError(f"bsub: expected 'Job <id> is submitted ...', got {text.strip()!r}")
    return match.group(1)


def submit_lsf(script: Path) -> str:
    """Submit ``script`` as ``bsub < script`` (bsub reads ``#BSUB`` lines only from stdin); return the job id."""
    try:
        with open(script, "rb") as stdin:
            done = subprocess.run(["bsub"], stdin=stdin, capture_output=True, timeout=SCONTROL_TIMEOUT, check=False)
    except FileNotFoundError:
        raise EnsembleError("bsub: command not found (is LSF installed on this machine?)") from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnsembleError(f"bsub could not run: {exc}") from None
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise EnsembleError(f"bsub rejected the job ({done.returncode}): {err.strip() or out.strip()}")
    return parse_bsub_output(out)

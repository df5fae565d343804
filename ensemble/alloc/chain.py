"""Allocations from Slurm: :meth:`Ensemble.execute_alloc` and the repeats that follow it.

``execute_alloc`` writes the batch script, submits it and records the job as a new chain (see
:mod:`ensemble.setup.allocations`).  When ``ensemble execute --block`` starts inside a job of a chain
(``SLURM_JOB_ID`` is the chain's current job or its pending follow-up), :func:`run_in_job`:

1. records a starting follow-up as the chain's current job;
2. exits 0 at once if no run is queued (a follow-up the ensemble no longer needs);
3. if repeats are left, submits the follow-up (the same script, ``--dependency=afterany:<this
   job>``) *before* the engine runs, so it is queued however this job ends (time limit, node
   failure, SIGKILL);
4. runs the engine; afterwards, unless runs are still queued and the manager stopped only for
   want of time (exit 5, no stop requested), cancels the follow-up, so no allocation outlives
   the ensemble.
"""
from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensemble.engine import EXIT_WORK_LEFT
from ensemble.errors import EnsembleError, SpecError
from ensemble.flux.batch import flux_start_line, render_flux_script, submit_flux
from ensemble.providers.bsub import render_lsf_script, submit_lsf
from ensemble.providers.sbatch import (
    AllocRequest,
    check_request,
    execute_argv,
    release,
    render_script,
    sbatch,
    scancel,
    write_script,
)
from ensemble.providers.where import in_flux_instance
from ensemble.setup import allocations
from ensemble.setup.handle import EnsembleHandle
from ensemble.status import RunStatus

log = logging.getLogger(__name__)
__all__ = ["check_request", "run_in_job", "script_text", "submit_alloc"]

#: Seconds a running manager has to record a new chain (it reads its inbox every second).
RECORD_WAIT = 30.0


#: Names the batch system ``execute_alloc`` submits to, overriding detection: slurm, lsf or flux.
BATCH_SYSTEM_ENV = "ENSEMBLE_BATCH_SYSTEM"
BATCH_SYSTEMS = ("slurm", "lsf", "flux")


def batch_system(use_flux: Any = False) -> str:
    """Where ``execute_alloc`` submits: ``$ENSEMBLE_BATCH_SYSTEM`` if set; else ``flux`` inside a
    Flux instance (``FLUX_URI``); else ``slurm`` where ``sbatch`` is on PATH, ``lsf`` where
    ``bsub`` is, ``flux`` where ``flux`` is (or ``use_flux`` names it); else ``slurm`` (whose
    error then names the missing sbatch).  Commands are looked up, never run."""
    chosen = os.environ.get(BATCH_SYSTEM_ENV)
    if chosen:
        if chosen not in BATCH_SYSTEMS:
            raise SpecError(f"{BATCH_SYSTEM_ENV}: expected one of {', '.join(BATCH_SYSTEMS)}, got {chosen!r}")
        return chosen
    if in_flux_instance():
        return "flux"
    if shutil.which("sbatch"):
        return "slurm"
    if shutil.which("bsub"):
        return "lsf"
    if isinstance(use_flux, str) or shutil.which("flux"):
        return "flux"
    return "slurm"


def script_text(ensemble: EnsembleHandle, request: AllocRequest, *extra: str) -> str:
    """The batch script ``execute_alloc`` would submit (nothing is written); ``extra``: more
    options of the ``ensemble execute`` it runs."""
    use_flux = ensemble.config.use_flux
    system = batch_system(use_flux)
    if system == "flux":
        return render_flux_script(ensemble.setup_dir, request, *extra)
    if system == "lsf":
        if use_flux:
            raise SpecError(f"use_flux: starting Flux inside an LSF job is not built; on LSF run "
                            f"'jsrun ... flux start' yourself, or create the ensemble without use_flux, got {use_flux!r}")
        if extra:
            raise SpecError("max_allocations: automatic allocations are built on Slurm and Flux, not LSF; "
                            f"submit with bsub yourself, got max_allocations={request.max_allocations!r}")
        return render_lsf_script(ensemble.setup_dir, request)
    line = flux_start_line(ensemble.setup_dir, request, use_flux, *extra) if use_flux else \
        "exec " + shlex.join(execute_argv(ensemble.setup_dir, request, *extra))
    return render_script(ensemble.setup_dir, request, line)


def _submit_single(ensemble: EnsembleHandle, request: AllocRequest, system: str) -> str:
    """``bsub < script`` or ``flux batch script``; the job is recorded as a chain of one (follow-ups
    are built on Slurm's job dependencies only)."""
    if request.repeats:
        raise SpecError(f"repeats: follow-up allocations use Slurm's job dependencies; on {system.upper()} "
                        f"submit again when the job ends, got repeats={request.repeats!r}")
    suffix = ".lsf" if system == "lsf" else ".flux"
    path = write_script(ensemble.setup_dir, script_text(ensemble, request), suffix=suffix)
    try:
        job = submit_lsf(path) if system == "lsf" else submit_flux(path, ensemble.config.use_flux or True)
    except EnsembleError:
        discard_script(path)
        raise
    ensemble.submit_command(allocations.command("submitted", job, job, script=str(path), repeats=0, nodes=request.nodes,
                                         time_limit=request.timeout))
    return job


def submit_alloc(ensemble: EnsembleHandle, request: AllocRequest) -> str:
    """Write the batch script, submit it, record the new chain; return the job id.

    The job is submitted held and released once the chain is recorded: a job that started
    first would not know it belongs to a chain.  Where the batch system is LSF or Flux, the job
    is submitted with ``bsub`` or ``flux batch`` and has no follow-ups."""
    system = batch_system(ensemble.config.use_flux)
    if system != "slurm":
        return _submit_single(ensemble, request, system)
    path = write_script(ensemble.setup_dir, script_text(ensemble, request))
    try:
        job = sbatch(path, hold=True)
    except EnsembleError:
        discard_script(path)
        raise
    try:
        how = ensemble.submit_command(allocations.command("submitted", job, job, script=str(path),
                                                   repeats=request.repeats, nodes=request.nodes,
                                                   time_limit=request.timeout))
        end = time.monotonic() + RECORD_WAIT
        while how == "posted" and not allocations.find(ensemble.store, job):
            if time.monotonic() > end:
                raise EnsembleError(f"the running manager did not record allocation {job} "
                                    f"within {RECORD_WAIT:g} s")
            time.sleep(0.1)
        release(job)
    except BaseException:
        try:
            scancel(job)
        except EnsembleError as exc:  # the first error is the one to report
            log.error("could not cancel held job %s: %s", job, exc)
        discard_script(path)
        raise
    return job


def discard_script(path: Path) -> None:
    """Remove a script that was never submitted (and ``batch/`` if it was the first): the setup
    directory is left as it was."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass


def _queued(ensemble: EnsembleHandle) -> int:
    return ensemble.store.count_with_status([RunStatus.QUEUED])


def _say(message: str) -> None:
    """A line in the job's output (``<setup_dir>/logs/slurm-<job>.out``)."""
    print(f"ensemble: {message}", file=sys.stderr, flush=True)


def _cancel(ensemble: EnsembleHandle, chain_id: str, job: str, reason: str) -> None:
    try:
        scancel(job)
    except EnsembleError as exc:
        _say(f"could not cancel follow-up allocation {job}: {exc}")
        return
    ensemble.submit_command(allocations.command("cancelled", chain_id, job, reason=reason))
    _say(f"cancelled follow-up allocation {job}: {reason}")


def _follow_up(ensemble: EnsembleHandle, chain_id: str, chain: dict, job: str) -> str | None:
    """Submit the next allocation of the chain, held until this job ends; None if none is due."""
    if chain["pending"] not in (None, job):
        return chain["pending"]
    if chain["repeats_left"] <= 0:
        return None
    try:
        follow = sbatch(chain["script"], after=job)
    except EnsembleError as exc:
        _say(f"no follow-up allocation: {exc}")
        return None
    ensemble.submit_command(allocations.command("follow_up", chain_id, follow, after=job,
                                         repeats_left=chain["repeats_left"] - 1))
    _say(f"follow-up allocation {follow} queued after {job} ({chain['repeats_left'] - 1} repeats left)")
    return follow


def run_in_job(ensemble: EnsembleHandle, execute: Callable[[], int]) -> int:
    """Run ``execute`` (a blocking manager; returns its result code) as one link of an allocation
    chain when this process runs in a job of one; otherwise just run it."""
    job = os.environ.get("SLURM_JOB_ID", "")
    found = allocations.find(ensemble.store, job) if job else None
    if found is None:
        return execute()
    chain_id, chain = found
    started = time.time()
    if chain["pending"] == job:
        ensemble.submit_command(allocations.command("started", chain_id, job))
    if not _queued(ensemble):
        _say(f"allocation {job}: no run is queued, nothing to do")
        return 0
    follow = _follow_up(ensemble, chain_id, chain, job)
    try:
        code = execute()
    except EnsembleError:
        if follow:
            _cancel(ensemble, chain_id, follow, "the manager failed")
        raise
    if follow:
        stopped = (ensemble.store.get_meta("stop_requested") or 0) >= started
        left = _queued(ensemble)
        if code != EXIT_WORK_LEFT or stopped or not left:
            why = "no run is queued" if not left else "stop requested" if stopped else f"the manager exited {code}"
            _cancel(ensemble, chain_id, follow, why)
    return code

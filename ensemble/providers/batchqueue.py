"""A batch system's queue as automatic allocations see it: submit a script, list our jobs, cancel one.

:class:`SlurmQueue` uses ``sbatch``, ``squeue --me`` and ``scancel``; :class:`FluxQueue` uses
``flux batch``, ``flux jobs`` and ``flux cancel`` (with ``--parent`` from inside a Flux batch job,
whose own instance is not the one that queues allocations).  The queue's own answer is the truth
about which allocations are pending or running: a job that died is simply no longer listed.
"""
from __future__ import annotations

import os
import re
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.flux.batch import flux_program, submit_flux
from ensemble.providers.sbatch import client_command, sbatch, scancel
from ensemble.providers.slurm import SCONTROL_TIMEOUT


class JobState(Enum):
    """Where an allocation is: waiting in the queue, or holding nodes."""

    PENDING = "pending"
    RUNNING = "running"


#: Slurm's short state codes (``squeue -t``) that still count as an allocation.
SLURM_ACTIVE = {"PD": JobState.PENDING, "CF": JobState.RUNNING, "R": JobState.RUNNING, "S": JobState.RUNNING}
#: Flux job states that still count as an allocation (DEPEND, PRIORITY and SCHED are pending).
FLUX_ACTIVE = {"DEPEND": JobState.PENDING, "PRIORITY": JobState.PENDING, "SCHED": JobState.PENDING,
               "RUN": JobState.RUNNING}


class BatchQueue(ABC):
    """Submits, lists and cancels allocations of one batch system."""

    name = "base"

    @abstractmethod
    def submit(self, script: Path) -> str:
        """Submit the batch script; the new job's id."""

    @abstractmethod
    def active(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """Those of ``job_ids`` still pending or running (ending, ended and unknown ones are left out)."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel one job."""

    @abstractmethod
    def current_job(self, env: Mapping[str, str] = os.environ) -> str | None:
        """The id of the allocation this process runs in, if any."""

    @abstractmethod
    def cores_per_node(self, partition: str | None = None) -> int | None:
        """Cores of the smallest node allocations get (None where the batch system does not say)."""


class SlurmQueue(BatchQueue):
    """Slurm: ``sbatch --parsable``, ``squeue --me``, ``scancel``."""

    name = "slurm"

    def submit(self, script: Path) -> str:
        return sbatch(script)

    def active(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        wanted = set(job_ids)
        if not wanted:
            return {}
        out = client_command(["squeue", "-h", "--me", "-t", ",".join(SLURM_ACTIVE), "-o", "%i %t"])
        listed = (line.split() for line in out.splitlines())
        return {job: SLURM_ACTIVE[state] for job, state in (p for p in listed if len(p) == 2)
                if job in wanted and state in SLURM_ACTIVE}

    def cancel(self, job_id: str) -> None:
        scancel(job_id)

    def current_job(self, env: Mapping[str, str] = os.environ) -> str | None:
        return env.get("SLURM_JOB_ID") or None

    def cores_per_node(self, partition: str | None = None) -> int | None:
        try:
            out = client_command(["sinfo", "-h", "-o", "%c", *(["-p", partition] if partition else [])])
        except EnsembleError:
            return None
        counts = [int(m.group(1)) for m in re.finditer(r"(\d+)", out)]
        return min(counts) if counts else None


class FluxQueue(BatchQueue):
    """Flux: ``flux batch``, ``flux jobs``, ``flux cancel``; from inside one of its batch jobs, the
    same commands with ``flux --parent`` (the instance that queued the job)."""

    name = "flux"

    def __init__(self, use_flux: Any = True, env: Mapping[str, str] = os.environ) -> None:
        self.use_flux = use_flux
        self.inside = bool(env.get("FLUX_JOB_ID") and env.get("FLUX_URI"))

    def _argv(self, *words: str) -> list[str]:
        return [flux_program(self.use_flux), *(["--parent"] if self.inside else []), *words]

    def _run(self, *words: str) -> str:
        argv = self._argv(*words)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
                                  timeout=SCONTROL_TIMEOUT, env={**os.environ, "FLUX_F58_FORCE_ASCII": "1"})
        except (OSError, subprocess.SubprocessError) as exc:
            raise EnsembleError(f"flux {words[0]} could not run: {exc}") from None
        if done.returncode != 0:
            raise EnsembleError(f"flux {words[0]} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def submit(self, script: Path) -> str:
        if not self.inside:
            return submit_flux(script, self.use_flux)
        job = self._run("batch", str(script)).strip().splitlines()[-1:]
        if not job or not job[0].startswith("f"):
            raise EnsembleError(f"flux batch: expected a job id, got {job!r}")
        return job[0]

    def active(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        wanted = set(job_ids)
        if not wanted:
            return {}
        out = self._run("jobs", "-n", "--filter=pending,running", "-o", "{id.f58} {state}")
        listed = (line.split() for line in out.splitlines())
        return {job: FLUX_ACTIVE[state] for job, state in (p for p in listed if len(p) == 2)
                if job in wanted and state in FLUX_ACTIVE}

    def cancel(self, job_id: str) -> None:
        self._run("cancel", job_id)

    def current_job(self, env: Mapping[str, str] = os.environ) -> str | None:
        return env.get("FLUX_JOB_ID") or None

    def cores_per_node(self, partition: str | None = None) -> int | None:
        """The instance's cores over its nodes (``flux resource list``, every state)."""
        try:
            out = self._run("resource", "list", "-n", "-o", "{nnodes} {ncores}")
        except EnsembleError:
            return None
        pairs = [[int(v) for v in line.split()] for line in out.splitlines() if re.fullmatch(r"\d+ \d+", line.strip())]
        nodes, cores = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
        return cores // nodes if nodes else None

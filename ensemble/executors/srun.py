"""Slurm job steps: ``srun`` processes started at a limited rate."""
from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass

from ensemble.executors.adopted import AdoptedHandle
from ensemble.executors.base import Handle, Launch
from ensemble.executors.local import LocalExecutor, LocalHandle
from ensemble.providers.slurm import job_spec

#: Job steps created per second at most (``ENSEMBLE_SRUN_RATE`` overrides).  A burst of thousands
#: of sruns makes slurmctld answer "step creation temporarily disabled" and every srun retry; on
#: the test machine 60/s cost 10% against no limit (200 one-task runs on 32 CPUs: 3.0 s vs 2.7 s).
SRUN_RATE = 60.0
#: Steps that may start at once after a quiet spell.
SRUN_BURST = 60
#: How long an answer "the allocation still runs" is trusted (failing sruns ask at most this often).
ALIVE_CACHE_SECONDS = 5.0


def srun_rate() -> float:
    value = os.environ.get("ENSEMBLE_SRUN_RATE")
    return float(value) if value else SRUN_RATE


@dataclass
class SrunExecutor(LocalExecutor):
    """Starts each attempt's ``srun`` as a local process, no faster than ``rate`` per second.

    The srun processes are watched and signalled like local ones: srun forwards SIGTERM to the
    step's tasks on every node, and Slurm ends the step when srun dies.
    """

    name = "srun"
    rate: float = 0.0
    burst: int = SRUN_BURST
    alive_until: float = 0.0
    gone: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.rate = self.rate or srun_rate()
        self.tokens, self.filled_at = float(self.burst), time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.filled_at) * self.rate)
        self.filled_at = now

    def start_room(self) -> int | None:
        self._refill()
        return max(0, int(self.tokens))

    def next_start(self) -> float | None:
        self._refill()
        return None if self.tokens >= 1 else self.filled_at + (1 - self.tokens) / self.rate

    def start(self, launch: Launch) -> LocalHandle:
        self._refill()
        self.tokens -= 1
        return super().start(launch)

    def lost(self, handle: Handle) -> bool:
        """An srun that failed because the job is being cancelled or has ended ("job has expired")
        says nothing about its step: its run is interrupted, not failed."""
        if isinstance(handle, AdoptedHandle) or not isinstance(handle, LocalHandle):
            return super().lost(handle)
        try:
            info = os.waitid(os.P_PIDFD, handle.pidfd, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        if info is None or (info.si_code == os.CLD_EXITED and info.si_status == 0):
            return False
        return not self._allocation_running()

    def _allocation_running(self) -> bool:
        job = job_spec()
        if job is None or self.gone:
            return not self.gone
        if time.monotonic() < self.alive_until:
            return True
        done = _squeue_state(job)
        if done is None:
            return True
        if done.returncode != 0 and "invalid job id" not in done.stderr.lower():
            return True  # slurmctld did not answer: no reason to blame the allocation
        if done.stdout.strip() == "RUNNING":
            self.alive_until = time.monotonic() + ALIVE_CACHE_SECONDS
            return True
        self.gone = True
        return False

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "srun_rate": self.rate, "srun_burst": self.burst}


def _squeue_state(job: str) -> subprocess.CompletedProcess | None:
    """``squeue -j JOB -o %T``; asked again when a signal killed it (a cancelled job's signal
    reaches every process in it, this squeue included); None when it could not run."""
    for _ in range(2):
        try:
            done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode >= 0:
            break
    return done

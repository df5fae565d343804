"""Slurm job steps: ``srun`` processes started at a limited rate."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ensemble.executors.base import Launch
from ensemble.executors.local import LocalExecutor, LocalHandle

#: Job steps created per second at most (``ENSEMBLE_SRUN_RATE`` overrides).  A burst of thousands
#: of sruns makes slurmctld answer "step creation temporarily disabled" and every srun retry; on
#: the test machine 60/s cost 10% against no limit (200 one-task runs on 32 CPUs: 3.0 s vs 2.7 s).
SRUN_RATE = 60.0
#: Steps that may start at once after a quiet spell.
SRUN_BURST = 60


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

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "srun_rate": self.rate, "srun_burst": self.burst}

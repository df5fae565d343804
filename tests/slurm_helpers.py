"""The real Slurm the Slurm tests run against (``tests/testbed/slurm.sh``).

The session fixture starts the testbed if it is not running (root only).  Without root the
Slurm tests skip with the reason; with ``CI=true`` they never skip: a missing Slurm fails them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTBED = Path(__file__).parent / "testbed" / "slurm.sh"
STATE = Path(os.environ.get("ENSEMBLE_SLURM_STATE", "/tmp/ensemble-slurm"))
#: Nodes and CPUs per node the testbed is started with (more CPUs than the machine has).
NODES, CPUS, GPUS = 4, 8, 2
DEADLINE = 120.0


@dataclass
class Slurm:
    """A running testbed: its configuration and a client environment."""

    conf: Path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, check=check, timeout=DEADLINE)

    def squeue(self) -> list[str]:
        """Ids of jobs Slurm still has queued or running."""
        return self.run("squeue", "-h", "-o", "%i").stdout.split()

    def job_state(self, job_id: str) -> str:
        fields = dict(t.split("=", 1) for t in self.run("scontrol", "show", "job", "-o", job_id).stdout.split()
                      if "=" in t)
        return fields.get("JobState", "")

    def submit(self, script: Path, out: Path, *options: str) -> str:
        """``sbatch --parsable``: the job id (``sbatch --wait`` polls with growing sleeps: slow)."""
        return self.run("sbatch", "--parsable", *options, "-o", str(out), str(script)).stdout.strip().split(";")[0]

    def exit_code(self, job_id: str) -> int:
        """The batch script's exit status as Slurm recorded it (``ExitCode=<status>:<signal>``)."""
        fields = dict(t.split("=", 1) for t in self.run("scontrol", "show", "job", "-o", job_id).stdout.split()
                      if "=" in t)
        return int(fields["ExitCode"].split(":")[0])

    def sbatch_wait(self, script: Path, out: Path, *options: str) -> tuple[str, int]:
        """Submit, wait until the job is gone; its id and the batch script's exit status."""
        job_id = self.submit(script, out, *options)
        self.wait_gone([job_id])
        return job_id, self.exit_code(job_id)

    def wait_gone(self, job_ids: list[str], deadline: float = DEADLINE) -> None:
        """Wait until none of the jobs is in squeue."""
        end = time.monotonic() + deadline
        while set(job_ids) & set(self.squeue()):
            if time.monotonic() > end:
                raise AssertionError(f"jobs {job_ids} still queued: {self.run('squeue').stdout}")
            time.sleep(0.2)


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Slurm tests cannot be skipped in CI: {reason}")
    pytest.skip(reason)


def start_testbed() -> Slurm:
    conf = STATE / "slurm.conf"
    env = {**os.environ, "SLURM_CONF": str(conf)}
    up = shutil.which("sinfo") and conf.is_file() and subprocess.run(
        ["sinfo", "-h"], env=env, capture_output=True, timeout=30).returncode == 0
    if not up:
        if os.geteuid() != 0:
            _skip_or_fail("a real Slurm needs root to install and start (tests/testbed/slurm.sh)")
        done = subprocess.run([str(TESTBED), "start", str(NODES), str(CPUS)], capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            _skip_or_fail(f"tests/testbed/slurm.sh start failed: {done.stderr.strip()[-500:]}")
    return Slurm(conf)


def batch_script(path: Path, setup_dir: Path, *args: str, before: str = "") -> Path:
    """A user's own batch script that runs ``ensemble execute --block`` with this Python."""
    path.write_text(f"#!/bin/bash\n{before}\n"
                    f"exec {sys.executable} -m ensemble --setup-dir {setup_dir} execute --block {' '.join(args)}\n")
    path.chmod(0o755)
    return path

"""Which provider, launcher and executor a manager uses: detected, or chosen with ``launcher=``.

``auto`` (the default): inside a Slurm job (``SLURM_JOB_ID`` set) with ``srun`` on PATH, steps
start through ``srun`` on the job's nodes; anywhere else as plain local processes.  The choice is
made once, when options are checked, so a wrong one is a clear error before anything runs.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ensemble.errors import SpecError
from ensemble.executors import Executor, LocalExecutor, SrunExecutor
from ensemble.launchers import Launcher, LocalLauncher, MpirunLauncher, SrunLauncher
from ensemble.providers import LocalProvider, Provider, SlurmProvider
from ensemble.providers.slurm import in_slurm_job

LAUNCHER_CHOICES = ("auto", "local", "srun", "mpirun")
#: ``--mpi=`` values the srun launcher accepts (Slurm's plugin names; None: Slurm's MpiDefault).
MPI_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass
class Backend:
    """What one manager runs on: the allocation, how a step's command is built, how it is started."""

    provider: Provider
    launcher: Launcher
    executor: Callable[[], Executor]


def resolve_launcher(launcher: Any, env: Mapping[str, str] = os.environ) -> str:
    """The launcher name ``launcher=`` means here; SpecError for a name or place that cannot work."""
    if launcher is None:
        launcher = "auto"
    if launcher not in LAUNCHER_CHOICES:
        raise SpecError(f"launcher: expected one of {', '.join(LAUNCHER_CHOICES)}, got {launcher!r}")
    if launcher == "auto":
        return "srun" if in_slurm_job(env) and shutil.which("srun") else "local"
    if launcher == "srun" and not in_slurm_job(env):
        raise SpecError("launcher: 'srun' needs a Slurm allocation (SLURM_JOB_ID is not set here)")
    if launcher in ("srun", "mpirun") and not shutil.which(launcher):
        raise SpecError(f"launcher: {launcher!r} is not on PATH")
    return launcher


def check_mpi(mpi: Any) -> str | None:
    """``mpi=``: None (Slurm's default) or a plugin name such as ``pmix``, ``pmi2``, ``none``."""
    if mpi is None:
        return None
    if not isinstance(mpi, str) or not mpi or not set(mpi) <= MPI_NAME_CHARS:
        raise SpecError(f"mpi: expected an srun --mpi plugin name such as 'pmix', 'pmi2' or 'none', got {mpi!r}")
    return mpi


def choose_backend(launcher: str, mpi: str | None, cores: int | None, gpus: Any) -> Backend:
    """The backend for a resolved launcher name (see :func:`resolve_launcher`)."""
    slurm = in_slurm_job()
    if launcher == "local" or not slurm and launcher == "mpirun":
        provider: Provider = LocalProvider(cores, gpus)
    else:
        provider = SlurmProvider(cores, gpus if isinstance(gpus, int) else None)
    if launcher == "srun":
        return Backend(provider, SrunLauncher(mpi), SrunExecutor)
    if launcher == "mpirun":
        return Backend(provider, MpirunLauncher(), LocalExecutor)
    return Backend(provider, LocalLauncher(), LocalExecutor)

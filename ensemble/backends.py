"""Which provider, launcher and executor a manager uses: detected, or chosen with ``launcher=``.

``auto`` (the default): inside a Slurm job (``SLURM_JOB_ID`` set) with ``srun`` on PATH, steps
start through ``srun`` on the job's nodes, or, when at least :data:`WORKER_AUTO_RUNS` runs are
queued, through node-local workers (``worker``: single-task steps by the worker of their node,
wider ones still by ``srun``); anywhere else as plain local processes.  The choice is
made once, when options are checked, so a wrong one is a clear error before anything runs.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ensemble.errors import SpecError
from ensemble.executors import Executor, LocalExecutor, SrunExecutor, WorkerExecutor
from ensemble.launchers import Launcher, LocalLauncher, MpirunLauncher, SrunLauncher
from ensemble.providers import LocalProvider, Provider, SlurmProvider
from ensemble.providers.slurm import in_slurm_job
from ensemble.routing import RoutedExecutor, RoutedLauncher

LAUNCHER_CHOICES = ("auto", "local", "srun", "mpirun", "worker")
#: Queued runs from which ``auto`` picks the worker path inside Slurm: srun-per-run creates about
#: 20 steps/s, so below this the whole ensemble's step creation takes under 10 s, and the workers'
#: own start (one srun and one interpreter per node) would not pay for itself.
WORKER_AUTO_RUNS = 200
#: ``--mpi=`` values the srun launcher accepts (Slurm's plugin names; None: Slurm's MpiDefault).
MPI_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


@dataclass
class Backend:
    """What one manager runs on: the allocation, how a step's command is built, how it is started."""

    provider: Provider
    launcher: Launcher
    executor: Callable[[], Executor]


def resolve_launcher(launcher: Any, env: Mapping[str, str] = os.environ, queued: int = 0) -> str:
    """The launcher name ``launcher=`` means here, with ``queued`` runs waiting; SpecError for a
    name or place that cannot work."""
    if launcher is None:
        launcher = "auto"
    if launcher not in LAUNCHER_CHOICES:
        raise SpecError(f"launcher: expected one of {', '.join(LAUNCHER_CHOICES)}, got {launcher!r}")
    if launcher == "auto":
        if not (in_slurm_job(env) and shutil.which("srun")):
            return "local"
        return "worker" if queued >= WORKER_AUTO_RUNS else "srun"
    if launcher in ("srun", "worker") and not in_slurm_job(env):
        raise SpecError(f"launcher: {launcher!r} needs a Slurm allocation (SLURM_JOB_ID is not set here)")
    if launcher in ("srun", "mpirun", "worker") and not shutil.which("mpirun" if launcher == "mpirun" else "srun"):
        raise SpecError(f"launcher: {'mpirun' if launcher == 'mpirun' else 'srun'!r} is not on PATH")
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
    if launcher == "worker":
        return Backend(provider, RoutedLauncher(SrunLauncher(mpi)),
                       lambda: RoutedExecutor(SrunExecutor(), WorkerExecutor(provider.nodes())))
    return Backend(provider, LocalLauncher(), LocalExecutor)

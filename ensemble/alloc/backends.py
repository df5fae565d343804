"""Which provider, launcher and executor a manager uses: detected, or chosen with ``launcher=``.

``auto`` (the default): inside a Flux instance (``FLUX_URI`` set), or for an ensemble created
with ``use_flux``, steps are jobs of the instance (``flux``; an ensemble with ``use_flux`` and no
instance here is a clear error); inside a Slurm job (``SLURM_JOB_ID`` set) with ``srun`` on PATH, steps
start through ``srun`` on the job's nodes, or, when at least :data:`WORKER_AUTO_RUNS` runs are
queued, through node-local workers (``worker``: single-task steps by the worker of their node,
wider ones still by ``srun``); inside an LSF job (``LSB_JOBID`` set) through ``lrun`` when it is
on PATH, else ``jsrun`` when that is; anywhere else as plain local processes.  Missing commands
are looked up with :func:`shutil.which`, never run, so detection cannot fail on them.  The choice is
made once, when options are checked, so a wrong one is a clear error before anything runs.

``mpi=`` (srun's ``--mpi=`` plugin) comes from the option, else from ``ENSEMBLE_MPI``, else is
not passed at all (srun then uses ``SLURM_MPI_TYPE`` or Slurm's ``MpiDefault``).  It only
concerns srun: other launchers ignore it.  ``launcher="mpirun"`` runs the program
``ENSEMBLE_MPIRUN`` names (default ``mpirun``; ``mpiexec`` or a full path).
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ensemble.errors import SpecError
from ensemble.providers.where import in_flux_instance, in_lsf_job, in_slurm_job
from ensemble.spec.options import LAUNCHER_CHOICES, check_mpi_name

if TYPE_CHECKING:
    from ensemble.executors import Executor
    from ensemble.launchers import Launcher
    from ensemble.providers import Provider

#: The LSF launchers, in the order ``auto`` prefers them.
LSF_LAUNCHERS = ("lrun", "jsrun")
#: Queued runs from which ``auto`` picks the worker path inside Slurm: srun-per-run creates at most
#: 60 steps/s (the executor's limit; slurmctld gave 74/s unlimited here), so below this step
#: creation costs a few seconds in all and every run keeps a job step of its own (Slurm's
#: accounting and cgroup); above it the workers' start (one srun and interpreter per node) pays.
WORKER_AUTO_RUNS = 200
#: The program ``launcher="mpirun"`` runs (default ``mpirun``).
MPIRUN_ENV = "ENSEMBLE_MPIRUN"


@dataclass
class Backend:
    """What one manager runs on: the allocation, how a step's command is built, how it is started."""

    provider: Provider
    launcher: Launcher
    executor: Callable[[], Executor]


def mpirun_program(env: Mapping[str, str] = os.environ) -> str:
    """The program of the mpirun launcher: ``ENSEMBLE_MPIRUN`` or ``mpirun``."""
    return env.get(MPIRUN_ENV) or "mpirun"


def resolve_launcher(launcher: Any, env: Mapping[str, str] = os.environ, queued: int = 0,
                     use_flux: Any = False) -> str:
    """The launcher name ``launcher=`` means here, with ``queued`` runs waiting (``use_flux``: the
    ensemble's setting); SpecError for a name or place that cannot work."""
    if launcher is None:
        launcher = "auto"
    if launcher not in LAUNCHER_CHOICES:
        raise SpecError(f"launcher: expected one of {', '.join(LAUNCHER_CHOICES)}, got {launcher!r}")
    if launcher == "flux" or launcher == "auto" and (use_flux or in_flux_instance(env)):
        if not in_flux_instance(env):
            raise SpecError(f"{'launcher' if launcher == 'flux' else 'use_flux'}: steps run as Flux jobs, but no "
                            "Flux instance is here (FLUX_URI is not set): execute with execute_alloc (ensemble "
                            "submit), which starts one, or inside 'flux alloc' / 'flux batch'; --launcher local "
                            "runs plain processes instead")
        return "flux"
    if launcher == "auto":
        if in_slurm_job(env) and shutil.which("srun"):
            return "worker" if queued >= WORKER_AUTO_RUNS else "srun"
        if in_lsf_job(env):
            return next((name for name in LSF_LAUNCHERS if shutil.which(name)), "local")
        return "local"
    if launcher in LSF_LAUNCHERS and not in_lsf_job(env):
        raise SpecError(f"launcher: {launcher!r} needs an LSF allocation (LSB_JOBID is not set here)")
    if launcher in LSF_LAUNCHERS and not shutil.which(launcher):
        raise SpecError(f"launcher: {launcher!r} is not on PATH")
    if launcher in ("srun", "worker") and not in_slurm_job(env):
        raise SpecError(f"launcher: {launcher!r} needs a Slurm allocation (SLURM_JOB_ID is not set here)")
    if launcher in ("srun", "worker") and not shutil.which("srun"):
        raise SpecError(f"launcher: {launcher!r} needs srun, which is not on PATH")
    if launcher == "mpirun" and not shutil.which(mpirun_program(env)):
        where = f" ({MPIRUN_ENV})" if env.get(MPIRUN_ENV) else ""
        raise SpecError(f"launcher: 'mpirun' runs {mpirun_program(env)!r}{where}, which is not on PATH")
    return launcher


def check_mpi(mpi: Any, launcher: str, env: Mapping[str, str] = os.environ) -> str | None:
    """The ``srun --mpi=`` plugin for a resolved launcher: ``mpi=``, else ``ENSEMBLE_MPI``, else None
    (Slurm's default); always None for launchers other than srun.

    A name is a plugin name such as ``pmix``, ``pmi2``, ``none``; one that ``srun --mpi=list``
    does not offer is a SpecError naming those it does (when it can say).
    """
    mpi, source = check_mpi_name(mpi, env)
    if mpi is None or launcher not in ("srun", "worker"):
        return None
    from ensemble.launchers.srun import srun_mpi_plugins

    offered = srun_mpi_plugins()
    if offered and mpi not in offered:
        raise SpecError(f"{source}: srun offers --mpi={', '.join(sorted(offered))}, not {mpi!r}")
    return mpi


def choose_backend(launcher: str, mpi: str | None, cores: int | None, gpus: Any) -> Backend:
    """The backend for a resolved launcher name (see :func:`resolve_launcher`).  Only the chosen
    provider, launcher and executor are imported."""
    if launcher == "flux":
        return _flux_backend(cores, gpus)
    if launcher in LSF_LAUNCHERS:
        return _lsf_backend(launcher, cores, gpus)
    from ensemble.executors import SpawnerExecutor
    from ensemble.providers import LocalProvider

    if launcher == "local" or launcher == "mpirun" and not in_slurm_job():
        provider: Provider = LocalProvider(cores, gpus)
    else:
        provider = _slurm_provider(cores, gpus)
    if launcher == "srun":
        from ensemble.executors import SrunExecutor
        from ensemble.launchers import SrunLauncher

        return Backend(provider, SrunLauncher(mpi), SrunExecutor)
    if launcher == "mpirun":
        from ensemble.launchers import MpirunLauncher

        return Backend(provider, MpirunLauncher(mpirun_program()), SpawnerExecutor)
    if launcher == "worker":
        return _worker_backend(provider, mpi)
    from ensemble.launchers import LocalLauncher

    return Backend(provider, LocalLauncher(), SpawnerExecutor)


def _flux_backend(cores: int | None, gpus: Any) -> Backend:
    if isinstance(gpus, list):
        raise SpecError(f"gpus: device ids {gpus!r} name this machine's GPUs; inside a Flux instance its "
                        "resource set gives them (pass a count per node to use fewer)")
    from ensemble.flux.executor import FluxExecutor
    from ensemble.flux.instance import FluxProvider
    from ensemble.launchers import FluxLauncher

    return Backend(FluxProvider(cores, gpus), FluxLauncher(), FluxExecutor)


def _lsf_backend(launcher: str, cores: int | None, gpus: Any) -> Backend:
    if isinstance(gpus, list):
        raise SpecError(f"gpus: device ids {gpus!r} name this machine's GPUs; inside an LSF job pass the "
                        "GPU count of each host")
    from ensemble.executors import SpawnerExecutor
    from ensemble.launchers import JsrunLauncher, LrunLauncher
    from ensemble.providers import LsfProvider

    launch = JsrunLauncher() if launcher == "jsrun" else LrunLauncher()
    return Backend(LsfProvider(cores, gpus), launch, SpawnerExecutor)


def _slurm_provider(cores: int | None, gpus: Any) -> Provider:
    if isinstance(gpus, list):
        raise SpecError(f"gpus: device ids {gpus!r} name this machine's GPUs; inside a Slurm job the job's "
                        "GRES gives them (pass a count per node to use fewer)")
    from ensemble.providers import SlurmProvider

    return SlurmProvider(cores, gpus)


def _worker_backend(provider: Provider, mpi: str | None) -> Backend:
    from ensemble.alloc.routing import RoutedExecutor, RoutedLauncher
    from ensemble.executors import SrunExecutor, WorkerExecutor
    from ensemble.launchers import SrunLauncher

    return Backend(provider, RoutedLauncher(SrunLauncher(mpi)),
                   lambda: RoutedExecutor(SrunExecutor(), WorkerExecutor(provider.nodes())))

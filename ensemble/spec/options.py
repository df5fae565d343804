"""The options every manager takes, checked: plain data, no I/O, nothing detected.

What a manager is asked to do is checked here, wherever the manager will run (a process here, a
batch job, an array task); what depends on the machine (the launcher ``auto`` picks, the srun
``--mpi`` plugins offered, the allocation) is resolved by :mod:`ensemble.alloc.execution` and
:mod:`ensemble.alloc.backends` where the manager starts."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from ensemble.errors import SpecError, SpecTypeError

LAUNCHER_CHOICES = ("auto", "local", "srun", "mpirun", "worker", "jsrun", "lrun", "flux")
LOG_LAYOUTS = ("split", "combined")
#: ``--mpi=`` values the srun launcher accepts (Slurm's plugin names; None: Slurm's MpiDefault).
MPI_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
#: The ``--mpi=`` plugin when ``mpi=`` is not given.
MPI_ENV = "ENSEMBLE_MPI"


def positive(name: str, value: Any, number: type = int) -> Any:
    """``value`` if it is a positive integer (or number, for ``number=float``), None for None."""
    if value is None:
        return None
    kinds = (int, float) if number is float else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise SpecTypeError(f"{name}: expected a positive {'number' if number is float else 'integer'}, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise SpecError(f"{name}: must be > 0, got {value!r}")
    return value


def _early_stop(minutes: Any) -> float | None:
    """``early_stop`` minutes, positive; 0 (like None) means no early stop."""
    if isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and minutes == 0:
        return None
    return positive("early_stop", minutes, float)


def check_mpi_name(mpi: Any, env: Mapping[str, str] = os.environ) -> tuple[str | None, str]:
    """``mpi=``, else ``ENSEMBLE_MPI``, else None, checked as an srun ``--mpi`` plugin name; with
    the field it came from (for the error a later check may raise)."""
    source = "mpi"
    if mpi is None and env.get(MPI_ENV):
        mpi, source = env[MPI_ENV], MPI_ENV
    if mpi is not None and (not isinstance(mpi, str) or not mpi or not set(mpi) <= MPI_NAME_CHARS):
        raise SpecError(f"{source}: expected an srun --mpi plugin name such as 'pmix', 'pmi2' or 'none', "
                        f"got {mpi!r}")
    return mpi, source


def manager_options(parallelism: Any, allow_multiple: Any, max_concurrency: Any, kill_grace: Any = 3.0,
                    log_layout: Any = "split", mpi: Any = None, early_stop: Any = None) -> dict[str, Any]:
    """The checked options every manager takes, wherever it runs (no launcher, no resources)."""
    if not isinstance(allow_multiple, bool):
        raise SpecTypeError(f"allow_multiple: expected True or False, got {allow_multiple!r}")
    if isinstance(kill_grace, bool) or not isinstance(kill_grace, (int, float)) or not (
            math.isfinite(kill_grace) and kill_grace >= 0):
        raise SpecError(f"kill_grace: expected seconds >= 0, got {kill_grace!r}")
    if log_layout not in LOG_LAYOUTS:
        raise SpecError(f"log_layout: expected one of {', '.join(LOG_LAYOUTS)}, got {log_layout!r}")
    check_mpi_name(mpi)  # the name only: the launcher, and so the plugins offered, are decided where the manager runs
    return dict(parallelism=positive("parallelism", parallelism) or 1, allow_multiple=allow_multiple,
                max_concurrency=positive("max_concurrency", max_concurrency), kill_grace=float(kill_grace),
                log_layout=log_layout, mpi=mpi, early_stop=_early_stop(early_stop))


def check_run_range(value: Any) -> list[int] | None:
    """``run_range``: ``"LO-HI"`` or ``(LO, HI)``, run ids with 1 <= LO <= HI (both included)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else None
    if text is not None:
        parts = text.split("-")
        value = tuple(int(p) if p.strip().isdigit() else p for p in parts)
    if not (isinstance(value, (tuple, list)) and len(value) == 2 and
            all(isinstance(v, int) and not isinstance(v, bool) for v in value) and 1 <= value[0] <= value[1]):
        raise SpecError(f"run_range: expected run ids LO-HI with 1 <= LO <= HI, got {text if text is not None else value!r}")
    return [int(value[0]), int(value[1])]

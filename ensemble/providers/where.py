"""Where this process runs: inside a Slurm job, an LSF job or a Flux instance.

Each answer is one look at the environment, so asking costs nothing and cannot fail; the
providers themselves (and their modules) are loaded only for the allocation in use.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

#: The variable a Flux instance sets for the processes inside it.
FLUX_URI = "FLUX_URI"


def in_slurm_job(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs inside a Slurm job (``SLURM_JOB_ID`` is set)."""
    return bool(env.get("SLURM_JOB_ID"))


def in_lsf_job(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs inside an LSF job (``LSB_JOBID`` is set)."""
    return bool(env.get("LSB_JOBID"))


def in_flux_instance(env: Mapping[str, str] = os.environ) -> bool:
    """Whether this process runs inside a Flux instance (``FLUX_URI`` is set)."""
    return bool(env.get(FLUX_URI))

"""Allocation providers: how the resources an engine runs on are obtained."""
from __future__ import annotations

from ensemble.lazy import lazy_exports

#: Each exported name and the submodule defining it, imported on first use (see :mod:`ensemble.lazy`).
WHERE = {
    "LocalProvider": "local",
    "LsfProvider": "lsf",
    "Provider": "base",
    "SlurmProvider": "slurm",
}

__getattr__, __dir__ = lazy_exports(__name__, WHERE)
__all__ = list(WHERE)

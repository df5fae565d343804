"""Allocation providers: how the resources an engine runs on are obtained."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ensemble.lazy import lazy_exports

#: Each exported name and the submodule defining it, imported on first use (see :mod:`ensemble.lazy`).
WHERE = {
    "LocalProvider": "local",
    "LsfProvider": "lsf",
    "Provider": "base",
    "SlurmProvider": "slurm",
}

if TYPE_CHECKING:
    from ensemble.providers.base import Provider
    from ensemble.providers.local import LocalProvider
    from ensemble.providers.lsf import LsfProvider
    from ensemble.providers.slurm import SlurmProvider

__getattr__, __dir__ = lazy_exports(__name__, WHERE)
__all__ = ["LocalProvider", "LsfProvider", "Provider", "SlurmProvider"]

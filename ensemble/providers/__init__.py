"""Allocation providers: how the resources an engine runs on are obtained."""
from ensemble.providers.base import Provider
from ensemble.providers.local import LocalProvider
from ensemble.providers.lsf import LsfProvider
from ensemble.providers.slurm import SlurmProvider

__all__ = ["LocalProvider", "LsfProvider", "Provider", "SlurmProvider"]

"""Inside a Flux instance: its nodes, cores and GPUs, and when it ends, as its R says.

The instance's resource set (RFC 20 ``R``, version 1) is read from the KVS key ``resource.R``:
``execution.R_lite`` lists ranks with their core and GPU ids, ``execution.nodelist`` the host
of each rank, ``execution.expiration`` the end (0: none).  Ids and host lists are decoded with
flux-python's own ``flux.idset`` and ``flux.hostlist``.  A test instance
(``flux start --test-size=N``) runs N brokers on one host: its nodes are named
``host:rank`` so that each keeps its own cores.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ensemble.errors import EnsembleError
from ensemble.flux.bindings import import_flux
from ensemble.providers.base import Provider
from ensemble.providers.resources import Node
from ensemble.providers.slurm import SlurmProvider
from ensemble.providers.where import FLUX_URI, in_slurm_job
from ensemble.spec.arguments import count_arg


def nodes_of_r(flux: ModuleType, r: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...], tuple[str, ...]]]:
    """``(host, core ids, GPU ids)`` per rank of an Rv1 resource set, in rank order."""
    execution = r.get("execution") or {}
    hosts = [str(h) for entry in execution.get("nodelist", []) for h in flux.hostlist.decode(entry)]
    ranks: dict[int, tuple[tuple[int, ...], tuple[str, ...]]] = {}
    for entry in execution.get("R_lite", []):
        children = entry.get("children") or {}
        cores = tuple(int(c) for c in flux.idset.decode(children.get("core", "")))
        gpus = tuple(str(g) for g in flux.idset.decode(children.get("gpu", "")))
        for rank in flux.idset.decode(entry["rank"]):
            ranks[int(rank)] = (cores, gpus)
    repeated = len(set(hosts)) < len(hosts)
    out = []
    for rank in sorted(ranks):
        host = hosts[rank] if rank < len(hosts) else f"rank{rank}"
        out.append((f"{host}:{rank}" if repeated else host, *ranks[rank]))
    return out


@dataclass
class FluxProvider(Provider):
    """The resources of the enclosing Flux instance (``cores``/``gpus`` cap each node's)."""

    cores: int | None = None
    gpus: int | None = None
    flux: ModuleType | None = None
    name = "flux"

    def __post_init__(self) -> None:
        self._r: dict[str, Any] | None = None

    def _resource_set(self) -> dict[str, Any]:
        if self._r is None:
            flux = self.flux or import_flux()
            try:
                self._r = flux.kvs.get(flux.Flux(), "resource.R")
            except OSError as exc:
                raise EnsembleError(f"flux: cannot read the instance's resources at {os.environ.get(FLUX_URI)!r} "
                                    f"(resource.R): {exc}") from None
            self.flux = flux
        return self._r

    def nodes(self) -> tuple[Node, ...]:
        cores = None if self.cores is None else count_arg("cores", self.cores, 1)
        gpus = None if self.gpus is None else count_arg("gpus", self.gpus, 0)
        found = nodes_of_r(self.flux or import_flux(), self._resource_set())
        if not found:
            raise EnsembleError("flux: the instance's resource set (resource.R) lists no resources")
        return tuple(Node(name, ids[:cores], devices[:gpus]) for name, ids, devices in found)

    def end_time(self) -> float | None:
        """R's ``expiration``; for an instance without one started inside a Slurm job (``srun ...
        flux start``), the Slurm job's end."""
        expiration = float((self._resource_set().get("execution") or {}).get("expiration") or 0)
        if expiration > 0:
            return expiration
        if in_slurm_job():
            return SlurmProvider().end_time()
        return None

    def describe(self) -> dict[str, object]:
        return {"provider": self.name, "flux_uri": os.environ.get(FLUX_URI)}

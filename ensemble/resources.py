"""Resources of an allocation (nodes x cores x GPUs) and the packing of steps onto them."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Node:
    """One node: a name, its core ids and its GPU ids."""

    name: str
    cores: tuple[int, ...]
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class Share:
    """The part of a placement on one node."""

    node: str
    tasks: int
    cores: tuple[int, ...]
    gpus: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"node": self.node, "tasks": self.tasks, "cores": list(self.cores), "gpus": list(self.gpus)}


@dataclass(frozen=True)
class Placement:
    """Where one step runs: one share per node it spans."""

    shares: tuple[Share, ...]

    @property
    def cores(self) -> tuple[int, ...]:
        return tuple(c for s in self.shares for c in s.cores)

    @property
    def gpus(self) -> tuple[int, ...]:
        return tuple(g for s in self.shares for g in s.gpus)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.shares)

    def to_list(self) -> list[dict]:
        return [s.to_dict() for s in self.shares]


@dataclass
class Pool:
    """Free cores and GPUs per node; tasks never straddle nodes."""

    nodes: tuple[Node, ...]
    free_cores: dict[str, list[int]] = field(init=False)
    free_gpus: dict[str, list[int]] = field(init=False)

    def __post_init__(self) -> None:
        self.free_cores = {n.name: list(n.cores) for n in self.nodes}
        self.free_gpus = {n.name: list(n.gpus) for n in self.nodes}

    @property
    def total_cores(self) -> int:
        return sum(len(n.cores) for n in self.nodes)

    @property
    def total_gpus(self) -> int:
        return sum(len(n.gpus) for n in self.nodes)

    def any_free(self) -> bool:
        """Whether any core is free anywhere."""
        return any(self.free_cores.values())

    @staticmethod
    def _tasks_fitting(cores: int, gpus: int, cores_per_task: int, gpus_per_task: int) -> int:
        fit = cores // cores_per_task
        return min(fit, gpus // gpus_per_task) if gpus_per_task else fit

    def can_ever_fit(self, tasks: int, cores_per_task: int, gpus_per_task: int) -> bool:
        """Whether the step fits into the empty allocation."""
        room = sum(self._tasks_fitting(len(n.cores), len(n.gpus), cores_per_task, gpus_per_task) for n in self.nodes)
        return room >= tasks

    def allocate(self, tasks: int, cores_per_task: int, gpus_per_task: int) -> Placement | None:
        """Take cores and GPUs for ``tasks`` tasks (fewest nodes first-fit), or None if they do not fit now."""
        plan, left = [], tasks
        for node in self.nodes:
            fit = self._tasks_fitting(len(self.free_cores[node.name]), len(self.free_gpus[node.name]),
                                      cores_per_task, gpus_per_task)
            if fit:
                take = min(fit, left)
                plan.append((node.name, take))
                left -= take
                if not left:
                    break
        if left:
            return None
        shares = []
        for name, take in plan:
            cores, gpus = self.free_cores[name], self.free_gpus[name]
            ncores, ngpus = take * cores_per_task, take * gpus_per_task
            shares.append(Share(name, take, tuple(cores[:ncores]), tuple(gpus[:ngpus])))
            del cores[:ncores], gpus[:ngpus]
        return Placement(tuple(shares))

    def release(self, placement: Placement) -> None:
        """Give a placement's cores and GPUs back."""
        for share in placement.shares:
            self.free_cores[share.node] = sorted(self.free_cores[share.node] + list(share.cores))
            self.free_gpus[share.node] = sorted(self.free_gpus[share.node] + list(share.gpus))


def detect_cores() -> int:
    """Cores this process may use (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


def detect_gpus() -> int:
    """GPUs visible here: from CUDA/ROCR_VISIBLE_DEVICES if set, else NVIDIA/AMD device files."""
    for var in ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        value = os.environ.get(var)
        if value is not None:
            return len([v for v in value.split(",") if v.strip()])
    nvidia = Path("/proc/driver/nvidia/gpus")
    if nvidia.is_dir():
        return len(list(nvidia.iterdir()))
    kfd = Path("/sys/class/kfd/kfd/topology/nodes")
    if kfd.is_dir():
        return sum(1 for n in kfd.iterdir() if (n / "gpu_id").is_file() and (n / "gpu_id").read_text().strip() != "0")
    return 0

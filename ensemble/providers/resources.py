"""Resources of an allocation (nodes x cores x GPUs), the packing of steps onto them, and GPU detection."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

#: Variables naming the GPUs a process may use, in the order detection reads them.
VISIBLE_DEVICES_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
#: Values of a ``*_VISIBLE_DEVICES`` entry that mean "no device" (and hide every entry after them).
NO_DEVICE_VALUES = frozenset({"-1", "NoDevFiles"})
#: What :func:`detect_gpus` reports as its source when no probe found anything.
NOTHING_FOUND = "nothing found (no *_VISIBLE_DEVICES, nvidia-smi, /dev/nvidia*, rocm-smi)"
#: Seconds an ``nvidia-smi``/``rocm-smi`` probe may take before it counts as "not found here".
PROBE_TIMEOUT = 10.0

_NVIDIA_SMI_GPU = re.compile(r"^GPU (\d+):", re.MULTILINE)
_ROCM_SMI_GPU = re.compile(r"^GPU\[(\d+)\]", re.MULTILINE)


@dataclass(frozen=True)
class Node:
    """One node: a name, its core ids and its GPU device ids (indices, ``GPU-``/``MIG-`` UUIDs) as given."""

    name: str
    cores: tuple[int, ...]
    gpus: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for gpu in self.gpus:
            if not isinstance(gpu, str) or not gpu or "," in gpu or "\0" in gpu:
                raise ValueError(f"Node.gpus: expected non-empty device id strings without ',' or NUL, got {gpu!r}")
        if len(set(self.gpus)) != len(self.gpus):
            raise ValueError(f"Node.gpus: duplicate device ids, got {self.gpus!r}")


@dataclass(frozen=True)
class Share:
    """The part of a placement on one node."""

    node: str
    tasks: int
    cores: tuple[int, ...]
    gpus: tuple[str, ...]

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
    def gpus(self) -> tuple[str, ...]:
        return tuple(g for s in self.shares for g in s.gpus)

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(s.node for s in self.shares)

    def to_list(self) -> list[dict]:
        return [s.to_dict() for s in self.shares]


@dataclass
class Pool:
    """Free cores and GPUs per node; tasks never straddle nodes.

    The pool remembers the placements it handed out (by identity) until they are released.
    """

    nodes: tuple[Node, ...]
    free_cores: dict[str, list[int]] = field(init=False)
    free_gpus: dict[str, list[str]] = field(init=False)
    #: Nodes nothing is placed on any more (their worker died): see :meth:`disable`.
    disabled: set[str] = field(init=False, default_factory=set)
    _held: dict[int, Placement] = field(init=False, repr=False)
    _gpu_rank: dict[str, dict[str, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.free_cores = {n.name: list(n.cores) for n in self.nodes}
        self.free_gpus = {n.name: list(n.gpus) for n in self.nodes}
        self._held = {}
        self._gpu_rank = {n.name: {g: k for k, g in enumerate(n.gpus)} for n in self.nodes}

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

    def can_ever_fit(self, tasks: int, cores_per_task: int, gpus_per_task: int, lost_too: bool = False) -> bool:
        """Whether the step fits into the empty allocation (``lost_too``: as it was before any node
        was disabled)."""
        room = sum(self._tasks_fitting(len(n.cores), len(n.gpus), cores_per_task, gpus_per_task) for n in self.nodes
                   if lost_too or n.name not in self.disabled)
        return room >= tasks

    def disable(self, name: str) -> None:
        """Place nothing more on node ``name``; what is held there is never given back to it."""
        self.disabled.add(name)
        self.free_cores[name], self.free_gpus[name] = [], []

    def allocate(self, tasks: int, cores_per_task: int, gpus_per_task: int) -> Placement | None:
        """Take cores and GPUs for ``tasks`` tasks on the fewest nodes, or None if they do not fit now.

        A step that fits on one node goes whole to the node with the least free room that fits it
        (best fit: fewest free GPUs first for a GPU step, fewest free cores first otherwise).  A wider
        step takes the nodes with the most room first; its remainder goes best-fit.
        """
        fits = self._fits(cores_per_task, gpus_per_task)
        single = _best_fit(fits, tasks)
        plan = [(single, tasks)] if single is not None else _spread(fits, tasks)
        if plan is None:
            return None
        placement = Placement(tuple(self._take(name, take, cores_per_task, gpus_per_task) for name, take in plan))
        self._held[id(placement)] = placement
        return placement

    def reserve(self, shares: list[dict]) -> Placement:
        """Take the cores and GPUs of a placement an earlier manager made, as far as this pool has
        them free (a step adopted from a dead manager keeps running where it was)."""
        taken = []
        for share in shares:
            name = share["node"]
            if name not in self.free_cores or name in self.disabled:
                continue
            cores = [c for c in share["cores"] if c in self.free_cores[name]]
            gpus = [g for g in share["gpus"] if g in self.free_gpus[name]]
            self.free_cores[name] = [c for c in self.free_cores[name] if c not in cores]
            self.free_gpus[name] = [g for g in self.free_gpus[name] if g not in gpus]
            taken.append(Share(name, share["tasks"], tuple(cores), tuple(gpus)))
        placement = Placement(tuple(taken))
        self._held[id(placement)] = placement
        return placement

    def _fits(self, cores_per_task: int, gpus_per_task: int) -> list[tuple[str, int, tuple[int, int]]]:
        """``(node, tasks fitting now, free room)`` for each node with room for one task."""
        out = []
        for name, cores in self.free_cores.items():
            ncores = len(cores)
            fit = ncores // cores_per_task
            if gpus_per_task:
                ngpus = len(self.free_gpus[name])
                fit = min(fit, ngpus // gpus_per_task)
                if fit:
                    out.append((name, fit, (ngpus, ncores)))
            elif fit:
                out.append((name, fit, (ncores, len(self.free_gpus[name]))))
        return out

    def _take(self, name: str, tasks: int, cores_per_task: int, gpus_per_task: int) -> Share:
        cores, gpus = self.free_cores[name], self.free_gpus[name]
        ncores, ngpus = tasks * cores_per_task, tasks * gpus_per_task
        share = Share(name, tasks, tuple(cores[:ncores]), tuple(gpus[:ngpus]))
        del cores[:ncores], gpus[:ngpus]
        return share

    def release(self, placement: Placement) -> None:
        """Give a placement's cores and GPUs back.

        Raises ValueError for a placement this pool does not hold: released already, or never allocated here.
        """
        if self._held.pop(id(placement), None) is not placement:
            raise ValueError(f"placement: not held by this pool (released twice?), got {placement.to_list()!r}")
        for share in placement.shares:
            if share.node in self.disabled:
                continue
            self.free_cores[share.node] = sorted(self.free_cores[share.node] + list(share.cores))
            self.free_gpus[share.node] = sorted(self.free_gpus[share.node] + list(share.gpus),
                                                key=self._gpu_rank[share.node].__getitem__)


def _best_fit(fits: list[tuple[str, int, tuple[int, int]]], tasks: int) -> str | None:
    """The node that holds all ``tasks`` with the least free room, or None."""
    best, best_room = None, None
    for name, fit, room in fits:
        if fit >= tasks and (best_room is None or room < best_room):
            best, best_room = name, room
    return best


def _spread(fits: list[tuple[str, int, tuple[int, int]]], tasks: int) -> list[tuple[str, int]] | None:
    """Tasks per node on the fewest nodes (most room first, the remainder best-fit), or None if short."""
    ranked = sorted(fits, key=lambda f: -f[1])
    plan, left = [], tasks
    for k, (name, fit, _) in enumerate(ranked):
        if fit >= left:
            plan.append((_best_fit(ranked[k:], left), left))
            return plan
        plan.append((name, fit))
        left -= fit
    return None


def detect_cores() -> int:
    """Cores this process may use (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


def parse_visible_devices(value: str) -> tuple[str, ...]:
    """Device ids of a ``*_VISIBLE_DEVICES`` value, as given; ``-1``/``NoDevFiles`` end the list."""
    ids = []
    for part in value.split(","):
        part = part.strip()
        if part in NO_DEVICE_VALUES:
            break
        if part:
            ids.append(part)
    return tuple(ids)


def _probe(argv: list[str]) -> str:
    """Output of a GPU tool, or "" when it is missing, hangs, fails or cannot be run."""
    if shutil.which(argv[0]) is None:  # no fork for a tool that is not there (most hosts lack one of them)
        return ""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=PROBE_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError, ValueError):
        return ""
    return done.stdout if done.returncode == 0 else ""


def _unique(ids: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(ids))


def nvidia_smi_gpus() -> tuple[str, ...]:
    """Indices of the physical GPUs ``nvidia-smi -L`` lists (MIG instances under a GPU are not counted)."""
    return _unique(_NVIDIA_SMI_GPU.findall(_probe(["nvidia-smi", "-L"])))


def nvidia_device_gpus(dev_root: str | os.PathLike = "/") -> tuple[str, ...]:
    """Indices of the ``<dev_root>/dev/nvidia<N>`` device files."""
    numbers = [p.name[len("nvidia"):] for p in Path(dev_root, "dev").glob("nvidia[0-9]*")]
    return tuple(sorted((n for n in numbers if n.isdigit()), key=int))


def rocm_smi_gpus() -> tuple[str, ...]:
    """Indices of the GPUs ``rocm-smi --showid`` lists (its ``GPU[N]`` lines)."""
    return _unique(_ROCM_SMI_GPU.findall(_probe(["rocm-smi", "--showid"])))


def detect_gpus(dev_root: str | os.PathLike = "/") -> tuple[tuple[str, ...], str]:
    """GPU ids visible here and where they came from.

    In order: ``CUDA_VISIBLE_DEVICES``, ``ROCR_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES`` (a set
    variable wins, even empty), ``nvidia-smi -L``, ``<dev_root>/dev/nvidia<N>``, ``rocm-smi --showid``;
    the first probe finding a GPU wins.  Nothing found gives ``((), NOTHING_FOUND)``.
    """
    for var in VISIBLE_DEVICES_VARS:
        value = os.environ.get(var)
        if value is not None:
            return parse_visible_devices(value), f"{var}={value}"
    probes = (("nvidia-smi -L", nvidia_smi_gpus), (str(Path(dev_root, "dev", "nvidia<N>")),
                                                   partial(nvidia_device_gpus, dev_root)),
              ("rocm-smi --showid", rocm_smi_gpus))
    for source, probe in probes:
        ids = probe()
        if ids:
            return ids, source
    return (), NOTHING_FOUND

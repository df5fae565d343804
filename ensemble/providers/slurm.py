"""Inside a Slurm job: its nodes, cores, GPUs and end time, as Slurm describes them.

Node names come from ``scontrol show hostnames`` (Slurm's own hostlist expansion), cores per
node from ``SLURM_JOB_CPUS_PER_NODE``, GPU ids and the end time from ``scontrol show job -d``.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from ensemble.errors import EnsembleError
from ensemble.providers.base import Provider
from ensemble.providers.resources import Node

#: Seconds a Slurm client command may take.
SCONTROL_TIMEOUT = 30.0
#: Pauses before a failed Slurm client command is tried again.
SLURM_RETRY_DELAYS = (1.0, 3.0)
_CPUS_GROUP = re.compile(r"^(\d+)(?:\(x(\d+)\))?$")
_GPU_IDX = re.compile(r"(?:^|,)gpu(?::[^:(,]+)?:\d+\(IDX:([^)]*)\)")
log = logging.getLogger(__name__)


def job_spec(env: Mapping[str, str] = os.environ) -> str | None:
    """How Slurm's clients name this process's job: ``<array>_<task>`` for a task of a job array
    (the array's last task carries the array's own id, under which every task is listed)."""
    array, task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else env.get("SLURM_JOB_ID")


def slurm_command(argv: list[str]) -> str:
    """Output of a Slurm client command, tried again after 1 s and 3 s (slurmctld may be busy for
    a moment); :class:`EnsembleError` naming it when it keeps failing."""
    delays = list(SLURM_RETRY_DELAYS)
    while True:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=SCONTROL_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except FileNotFoundError:
            raise EnsembleError(f"slurm: {argv[0]} is not on PATH") from None
        except (OSError, subprocess.SubprocessError) as exc:
            why = f"could not run: {exc}"
        else:
            if done.returncode == 0:
                return done.stdout
            why = f"failed ({done.returncode}): {done.stderr.strip()}"
        if not delays:
            raise EnsembleError(f"slurm: {' '.join(argv)} {why}")
        delay = delays.pop(0)
        log.warning("slurm: %s %s; trying again in %g s", " ".join(argv), why, delay)
        time.sleep(delay)


def expand_hostlist(hostlist: str) -> list[str]:
    """Node names of a Slurm hostlist such as ``node[1-3,7]``, expanded by ``scontrol show hostnames``."""
    return slurm_command(["scontrol", "show", "hostnames", hostlist]).split()


def parse_cpus_per_node(value: str, nodes: int) -> list[int]:
    """``SLURM_JOB_CPUS_PER_NODE`` (``36(x2),20``) as one CPU count per node."""
    counts: list[int] = []
    for group in value.split(","):
        match = _CPUS_GROUP.match(group.strip())
        if match is None:
            raise EnsembleError(f"SLURM_JOB_CPUS_PER_NODE: cannot read {value!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    if len(counts) != nodes:
        raise EnsembleError(f"SLURM_JOB_CPUS_PER_NODE: {value!r} describes {len(counts)} nodes, the job has {nodes}")
    return counts


def parse_index_list(text: str) -> list[str]:
    """GPU indices of a GRES ``IDX:`` list (``0-1,3``) as strings."""
    ids: list[str] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        ids.extend(str(k) for k in range(int(low), int(high or low) + 1))
    return ids


def parse_job_record(text: str) -> dict[str, str]:
    """The ``Key=Value`` fields of ``scontrol show job -d -o``; the per-node detail lines are kept
    in order under ``Nodes``, ``CPU_IDs`` and ``GRES`` joined by ``;``."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if not sep:
            continue
        if key in ("Nodes", "GRES", "CPU_IDs") and key in fields:
            fields[key] += ";" + value
        else:
            fields[key] = value
    return fields


def _epoch(stamp: str | None) -> float | None:
    """A Slurm local-time stamp (``2026-12-02T01:00:53``) in seconds since the epoch."""
    try:
        return time.mktime(time.strptime(stamp or "", "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


@dataclass
class SlurmProvider(Provider):
    """The nodes of the Slurm job this process runs in.

    ``cores`` and ``gpus`` override, per node, what Slurm says (None: as Slurm says).
    """

    cores: int | None = None
    gpus: int | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    name = "slurm"

    @property
    def job_id(self) -> str:
        return self.env["SLURM_JOB_ID"]

    @cached_property
    def record(self) -> dict[str, str]:
        return parse_job_record(slurm_command(["scontrol", "show", "job", "-d", "-o", job_spec(self.env)]))

    def nodes(self) -> tuple[Node, ...]:
        return self._nodes

    @cached_property
    def _nodes(self) -> tuple[Node, ...]:
        """Read once: the pool and the workers ask for the same nodes (scontrol runs once)."""
        hostlist = self.env.get("SLURM_JOB_NODELIST") or self.record.get("NodeList", "")
        names = expand_hostlist(hostlist)
        cpus = parse_cpus_per_node(self.env.get("SLURM_JOB_CPUS_PER_NODE", ""), len(names))
        gpus = self._gpus_per_node()
        out = []
        for name, ncpu in zip(names, cpus):
            ids = gpus.get(name, [])
            ids = ids if self.gpus is None else ids[:self.gpus] or [str(k) for k in range(self.gpus)]
            out.append(Node(name, tuple(range(ncpu if self.cores is None else min(ncpu, self.cores))), tuple(ids)))
        return tuple(out)

    def _gpus_per_node(self) -> dict[str, list[str]]:
        """GPU indices per node from the job's detail lines (``Nodes=... GRES=gpu:2(IDX:0-1)``)."""
        record = self.record
        groups = record.get("Nodes", "").split(";")
        gres = record.get("GRES", "").split(";")
        out: dict[str, list[str]] = {}
        for hostlist, spec in zip(groups, gres):
            ids = [i for m in _GPU_IDX.finditer(spec) for i in parse_index_list(m.group(1))]
            if hostlist and ids:
                for name in expand_hostlist(hostlist):
                    out[name] = ids
        return out

    def end_time(self) -> float | None:
        return _epoch(self.record.get("EndTime"))

    def describe(self) -> dict[str, object]:
        return {"provider": self.name, "job_id": self.job_id, "end_time": self.end_time()}

"""Inside an LSF job: its hosts and CPUs, as ``LSB_MCPU_HOSTS`` describes them.

``LSB_MCPU_HOSTS`` is ``host count host count ...``.  On CORAL systems (``bsub -nnodes``) the
first host is the launch node the batch script runs on, not a compute node: when other hosts
follow it, it is left out; a job of one host keeps it.  LSF has no standard variable for GPUs,
so GPUs per host are a count given with ``gpus=`` (default none; ids ``"0"``..``"N-1"``, which
only count them: jsrun binds the real devices).  LSF exports no end time either: the provider
says None and ``bsub -W`` ends the job.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ensemble.errors import EnsembleError
from ensemble.providers.base import Provider
from ensemble.providers.resources import Node
from ensemble.spec.arguments import count_arg


def parse_mcpu_hosts(value: str) -> list[tuple[str, int]]:
    """``LSB_MCPU_HOSTS`` as (host, CPUs) pairs, the launch node left out when compute hosts follow."""
    words = value.split()
    if not words or len(words) % 2:
        raise EnsembleError(f"LSB_MCPU_HOSTS: expected 'host count' pairs, got {value!r}")
    pairs = []
    for host, count in zip(words[::2], words[1::2]):
        if not count.isdigit() or int(count) < 1:
            raise EnsembleError(f"LSB_MCPU_HOSTS: {host!r} has {count!r} CPUs in {value!r}")
        pairs.append((host, int(count)))
    return pairs[1:] if len(pairs) > 1 else pairs


@dataclass
class LsfProvider(Provider):
    """The compute hosts of the LSF job this process runs in.

    ``cores`` caps the CPUs of each host; ``gpus`` is the GPU count of each host (None: 0).
    """

    cores: int | None = None
    gpus: int | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    name = "lsf"

    @property
    def job_id(self) -> str:
        return self.env["LSB_JOBID"]

    def nodes(self) -> tuple[Node, ...]:
        cores = None if self.cores is None else count_arg("cores", self.cores, 1)
        gpus = tuple(str(k) for k in range(0 if self.gpus is None else count_arg("gpus", self.gpus, 0)))
        return tuple(Node(host, tuple(range(ncpu if cores is None else min(ncpu, cores))), gpus)
                     for host, ncpu in parse_mcpu_hosts(self.env.get("LSB_MCPU_HOSTS", "")))

    def describe(self) -> dict[str, object]:
        return {"provider": self.name, "job_id": self.job_id, "end_time": None}

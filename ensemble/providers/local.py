"""No allocation: this machine, as it is."""
from __future__ import annotations

from dataclasses import dataclass

from ensemble.errors import SpecError, SpecTypeError
from ensemble.lease import HOST
from ensemble.providers.base import Provider
from ensemble.resources import Node, detect_cores, detect_gpus


def _count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecTypeError(f"{name}: expected an integer, got {value!r}")
    if value < minimum:
        raise SpecError(f"{name}: must be >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class LocalProvider(Provider):
    """This host with ``cores`` cores and ``gpus`` GPUs (detected when None)."""

    cores: int | None = None
    gpus: int | None = None
    name = "local"

    def nodes(self) -> tuple[Node, ...]:
        cores = detect_cores() if self.cores is None else _count("cores", self.cores, 1)
        gpus = detect_gpus() if self.gpus is None else _count("gpus", self.gpus, 0)
        return (Node(HOST, tuple(range(cores)), tuple(range(gpus))),)

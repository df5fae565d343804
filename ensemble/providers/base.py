"""The provider interface."""
from __future__ import annotations

from abc import ABC, abstractmethod

from ensemble.providers.resources import Node


class Provider(ABC):
    """Describes (and, for batch systems, requests) the allocation an engine runs in."""

    name = "base"

    @abstractmethod
    def nodes(self) -> tuple[Node, ...]:
        """The nodes, cores and GPUs the engine may use."""

    def end_time(self) -> float | None:
        """When the allocation ends (seconds since the epoch), or None if it has no end."""
        return None

    def describe(self) -> dict[str, object]:
        """What the engine records about the allocation at start."""
        return {"provider": self.name}

"""The provider interface."""
from __future__ import annotations

from abc import ABC, abstractmethod

from ensemble.resources import Node


class Provider(ABC):
    """Describes (and, for batch systems, requests) the allocation an engine runs in."""

    name = "base"

    @abstractmethod
    def nodes(self) -> tuple[Node, ...]:
        """The nodes, cores and GPUs the engine may use."""

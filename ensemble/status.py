"""Run status constants.

A run is *queued* until it completes; a queued run that a manager has taken is
additionally *running* (see :meth:`ensemble.Ensemble.count_running`).  The four
completed statuses are final until the run is requeued.
"""
from __future__ import annotations

from enum import IntEnum


class RunStatus(IntEnum):
    """Status of one run, stored as its integer value."""

    QUEUED = 0
    SUCCESS = 1
    FAILURE = 2
    ABORTED = 3
    KILLED = 4

    @property
    def label(self) -> str:
        """Lower-case name used in summaries and the CLI."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: "RunStatus | int | str") -> "RunStatus":
        """Accept a status, its integer value or its (case-insensitive) name."""
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                names = ", ".join(s.label for s in cls)
                raise ValueError(f"status: unknown status {value!r} (one of {names})") from None
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"status: unknown status {value!r}") from None


RUN_QUEUED = RunStatus.QUEUED
RUN_SUCCESS = RunStatus.SUCCESS
RUN_FAILURE = RunStatus.FAILURE
RUN_ABORTED = RunStatus.ABORTED
RUN_KILLED = RunStatus.KILLED

COMPLETED = (RUN_SUCCESS, RUN_FAILURE, RUN_ABORTED, RUN_KILLED)

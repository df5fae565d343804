"""The :class:`~ensemble.Ensemble` methods that summarise runs: DataFrames and exported files.

:mod:`ensemble.results.summaries` (and pandas) is imported when first used: starting the CLI does not need it.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, Any

from ensemble.status import RunStatus
from ensemble.store import Store


def _summaries():
    from ensemble.results import summaries

    return summaries


class Reports:
    """Mixed into :class:`~ensemble.Ensemble` (which provides ``store``)."""

    store: Store

    def as_dataframe(self, include_none: bool = True, *, statuses: Iterable[RunStatus | int | str] | None = None,
                     columns: Iterable[str] | None = None):
        """A pandas DataFrame indexed by run id, one row per run (its columns: :ref:`summaries`).

        Args:
            include_none: keep runs that have no result.
            statuses: only runs with one of these statuses.
            columns: only these columns, in this order (unknown names are an error listing the known ones).
        """
        return _summaries().dataframe(self.store, include_none, statuses, columns)

    def attempts_dataframe(self):
        """A pandas DataFrame with one row per recorded attempt, in the order they started."""
        return _summaries().attempts_dataframe(self.store)

    def write_csv(self, stream: IO[str], *, statuses: Iterable[Any] | None = None,
                  columns: Iterable[str] | None = None) -> None:
        """Write one CSV row per run (the columns of :meth:`as_dataframe`; the same filters)."""
        _summaries().write_csv(self.store, stream, statuses, columns)

    def write_json(self, stream: IO[str], *, statuses: Iterable[Any] | None = None) -> None:
        """Write a JSON list with one object per run (one line each)."""
        _summaries().write_json(self.store, stream, statuses)

    def write_yaml(self, stream: IO[str], *, statuses: Iterable[Any] | None = None) -> None:
        """Write a YAML list with one mapping per run."""
        _summaries().write_yaml(self.store, stream, statuses)

    def write_parquet(self, path: str | os.PathLike, *, statuses: Iterable[Any] | None = None,
                      columns: Iterable[str] | None = None) -> None:
        """Write :meth:`as_dataframe` to a Parquet file (needs pyarrow: ``pip install 'ensemble[parquet]'``)."""
        _summaries().write_parquet(self.store, path, statuses, columns)

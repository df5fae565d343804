"""Ensemble summaries: tables of runs and of attempts as DataFrames, CSV, JSON, YAML and Parquet.

Everything is read a chunk of runs at a time, one list per column
(:meth:`~ensemble.store.Store.run_chunks`); CSV, JSON and YAML are written chunk by chunk, so
their memory stays bounded however many runs there are.  pandas, numpy, yaml and pyarrow are
imported only when a summary needs them, so the CLI's status commands start fast.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from typing import IO, Any

from ensemble.errors import EnsembleError, SpecError, SpecTypeError
from ensemble.status import RunStatus
from ensemble.store import Store

INDEX = "run_id"
BUILTIN_COLUMNS = ("status", "restarts", "step", "attempts", "start", "end", "elapsed", "host", "run_dir",
                   "message", "sample_hash")
#: Names a sample label or result key cannot take as a column (they get a ``sample_``/``result_`` prefix).
RESERVED_COLUMNS = (INDEX, *BUILTIN_COLUMNS)
#: The column of results that are not dicts (and of a dict result's ``result`` key).
RESULT = "result"
STATUS_LABELS = tuple(s.label for s in RunStatus)
#: The keys of each run's record in JSON and YAML, in order.
RECORD_KEYS = (INDEX, "status", "running", "sample", "result", "restarts", "step", "attempts", "start", "end",
               "elapsed", "host", "run_dir", "message", "sample_hash")
ATTEMPT_COLUMNS = ("run_id", "step", "attempt", "manager", "host", "pid", "job", "start", "end", "exit_code",
                   "signal", "outcome", "command", "placement")


@dataclass(frozen=True)
class Column:
    """One column of the runs table: its name, where its values come from (``source``:
    ``"sample"``, ``"result"`` or ``"builtin"``) and the sample label or result key."""

    name: str
    source: str
    key: str = ""


def table_columns(sample_labels: Iterable[str], result_keys: Iterable[str | None]) -> list[Column]:
    """The columns of the runs table (after the ``run_id`` index), given the sample labels and the
    keys of dict results in order of first appearance (None: a result that is not a dict).

    Sample labels first, then result keys (one column per key of a dict result; results that are
    not dicts share a ``result`` column, which is there too when no run has a dict result), then
    :data:`BUILTIN_COLUMNS`.  A sample label in :data:`RESERVED_COLUMNS` is prefixed ``sample_``;
    a result key equal to a sample column or in :data:`RESERVED_COLUMNS` is prefixed ``result_``.
    """
    samples = [Column(f"sample_{k}" if k in RESERVED_COLUMNS else k, "sample", k) for k in sample_labels]
    taken = {c.name for c in samples}.union(RESERVED_COLUMNS)
    keys = dict.fromkeys(RESULT if key is None else key for key in list(result_keys) or [None])
    results = [Column(f"result_{k}" if k in taken else k, "result", k) for k in keys]
    return [*samples, *results, *(Column(name, "builtin") for name in BUILTIN_COLUMNS)]


def ensemble_columns(store: Store) -> list[Column]:
    """The columns of the runs table for every run of the ensemble (see :func:`table_columns`)."""
    return table_columns(store.sample_labels(), store.result_keys())


def select(available: list[Column], names: Iterable[str] | str | None) -> list[Column]:
    """The columns named (in that order; ``run_id``, always the index, is skipped), or all."""
    if names is None:
        return available
    wanted = [names] if isinstance(names, str) else list(names)
    for name in wanted:
        if not isinstance(name, str):
            raise SpecTypeError(f"columns: expected column names, got {name!r}")
    by_name = {c.name: c for c in available}
    unknown = [n for n in wanted if n not in by_name and n != INDEX]
    if unknown:
        raise SpecError(f"columns: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                        f"(available: {', '.join([INDEX, *by_name])})")
    return [by_name[n] for n in dict.fromkeys(wanted) if n != INDEX]


def status_codes(statuses: Iterable[RunStatus | int | str] | str | int | None) -> list[int]:
    """The status values asked for (none: every run)."""
    if statuses is None:
        return []
    items = [statuses] if isinstance(statuses, (str, int)) else list(statuses)
    return sorted({int(RunStatus.parse(s)) for s in items})


def values(chunk: dict[str, list], column: Column) -> list:
    """One column's values for a chunk of runs, as Python values (status codes, epoch seconds)."""
    if column.source == "sample":
        return [sample.get(column.key) for sample in chunk["sample"]]
    if column.source == "result":
        other = column.key == RESULT
        return [r.get(column.key) if type(r) is dict else (r if other else None) for r in chunk["result"]]
    if column.name == "elapsed":
        return [None if s is None or e is None else round(e - s, 6) for s, e in zip(chunk["start"], chunk["end"])]
    return chunk[column.name]


def _chunks(store: Store, statuses: Any, include_none: bool = True) -> Iterator[dict[str, list]]:
    """The runs asked for, a chunk at a time (the statuses are checked at once)."""
    return store.run_chunks(status_codes(statuses), with_result=not include_none)


# -- DataFrames ------------------------------------------------------------------------------------
def dataframe(store: Store, include_none: bool = True, statuses: Any = None, columns: Any = None):
    """The runs table as a DataFrame indexed by ``run_id`` (see :func:`table_columns`).

    ``status`` is a Categorical of the status labels; ``restarts``, ``step`` and ``attempts``
    are integers; ``start`` (first attempt) and ``end`` (last) are UTC datetimes, ``elapsed``
    their difference in seconds; ``host`` is the last attempt's.  Without ``columns``, the sample
    labels and result keys are those of the runs read.
    """
    import numpy as np
    import pandas as pd

    chunks = _chunks(store, statuses, include_none)
    if columns is None:
        ids, table = _read_found(chunks)
    else:
        ids, table = _read(chunks, select(ensemble_columns(store), columns))
    index = pd.Index(np.array(ids, dtype=np.int64), name=INDEX)
    return pd.DataFrame({column.name: _typed(column.name, data) for column, data in table}, index=index)


def _read(chunks: Iterator[dict[str, list]], chosen: list[Column]) -> tuple[list[int], list[tuple[Column, list]]]:
    """Run ids and the values of the ``chosen`` columns."""
    ids: list[int] = []
    table: list[tuple[Column, list]] = [(column, []) for column in chosen]
    for chunk in chunks:
        ids += chunk["id"]
        for column, data in table:
            data += values(chunk, column)
    return ids, table


def _read_found(chunks: Iterator[dict[str, list]]) -> tuple[list[int], list[tuple[Column, list]]]:
    """Run ids and the values of every column, with the sample labels and result keys found."""
    ids: list[int] = []
    found: dict[str, dict[str, list]] = {"sample": {}, "result": {}}
    builtins = {name: [] for name in BUILTIN_COLUMNS}
    for chunk in chunks:
        for source, keys in (("sample", chain.from_iterable(chunk["sample"])), ("result", _result_keys(chunk))):
            for key in dict.fromkeys(keys):
                found[source].setdefault(key, [None] * len(ids))
            for key, data in found[source].items():
                data += values(chunk, Column(key, source, key))
        for name, data in builtins.items():
            data += values(chunk, Column(name, "builtin"))
        ids += chunk["id"]
    columns = table_columns(found["sample"], found["result"])
    found["builtin"] = builtins
    if not found["result"]:
        found["result"][RESULT] = [None] * len(ids)  # the column shown when no run has a result
    return ids, [(c, found[c.source][c.key or c.name]) for c in columns]


def _result_keys(chunk: dict[str, list]) -> Iterator[str]:
    """The result keys of a chunk's runs (:data:`RESULT` for a result that is not a dict)."""
    for result in chunk["result"]:
        if type(result) is dict:
            yield from result
        elif result is not None:
            yield RESULT


def _typed(name: str, column: list) -> Any:
    """A built-in column as an array of its dtype; other columns as pandas infers, but integers
    with gaps nullable."""
    import numpy as np
    import pandas as pd

    if name == "status":
        return pd.Categorical.from_codes(np.array(column, dtype=np.int8), categories=STATUS_LABELS)
    if name in ("restarts", "step", "attempts"):
        return np.array(column, dtype=np.int64)
    if name in ("start", "end"):
        return utc_times(column)
    if name == "elapsed":
        return np.array(column, dtype=float)
    return _nullable_integers(column)


def _nullable_integers(column: list) -> Any:
    """Integers with gaps (a result some runs lack) as pandas' nullable ``Int64``, not ``float64``
    with NaN, which would change the values past 2**53 and print 3 as 3.0; anything else as it is."""
    if None not in column or all(value is None for value in column):
        return column
    if not all(value is None or (type(value) is int and -2**63 <= value < 2**63) for value in column):
        return column
    import pandas as pd

    return pd.array(column, dtype="Int64")


def utc_times(seconds: list[float | None]) -> Any:
    """Epoch seconds (None: missing) as UTC datetimes, to the microsecond (floats are no finer),
    halves rounded up as SQLite's ``round`` does for the run summaries, so both agree."""
    import numpy as np
    import pandas as pd

    micros = np.floor(np.array(seconds, dtype=float) * 1e6 + 0.5).astype("datetime64[us]")
    return pd.to_datetime(micros.astype("datetime64[ns]"), utc=True)


def attempts_dataframe(store: Store):
    """Every attempt, in the order they started: :data:`ATTEMPT_COLUMNS` (``command`` and
    ``placement`` decoded; ``pid``, ``exit_code`` and ``signal`` nullable integers)."""
    import numpy as np
    import pandas as pd

    data: dict[str, list] = {name: [] for name in ATTEMPT_COLUMNS}
    for chunk in store.attempt_chunks():
        for name in ATTEMPT_COLUMNS:
            data[name] += chunk[name]
    typed: dict[str, Any] = dict(data)
    for name in ("run_id", "step", "attempt"):
        typed[name] = np.array(data[name], dtype=np.int64)
    for name in ("pid", "exit_code", "signal"):
        typed[name] = pd.array(data[name], dtype="Int64")
    for name in ("start", "end"):
        typed[name] = utc_times(data[name])
    return pd.DataFrame(typed)


# -- files -----------------------------------------------------------------------------------------
def write_csv(store: Store, stream: IO[str], statuses: Any = None, columns: Any = None) -> None:
    """One CSV row per run, the columns of :func:`dataframe` (lists and dicts as JSON), chunk by chunk."""
    chosen = select(ensemble_columns(store), columns)
    chunks = _chunks(store, statuses)
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow([INDEX, *(c.name for c in chosen)])
    for chunk in chunks:
        writer.writerows(zip(chunk["id"], *(_cells(c.name, values(chunk, c)) for c in chosen)))


def _cells(name: str, column: list) -> list:
    """CSV cells of one column: status labels, ISO times, JSON for lists and dicts."""
    if name == "status":
        return [STATUS_LABELS[s] for s in column]
    if name in ("start", "end"):
        return [None if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(sep=" ") for t in column]
    return [json.dumps(v) if type(v) in (list, dict) else v for v in column]


def record_chunks(store: Store, statuses: Any = None) -> Iterator[list[dict[str, Any]]]:
    """Each run as a record of :data:`RECORD_KEYS` (sample and result nested), a chunk at a time."""
    for chunk in _chunks(store, statuses):
        chunk[INDEX] = chunk["id"]
        chunk["status"] = [STATUS_LABELS[s] for s in chunk["status"]]
        chunk["elapsed"] = values(chunk, Column("elapsed", "builtin"))
        yield [dict(zip(RECORD_KEYS, row)) for row in zip(*(chunk[k] for k in RECORD_KEYS))]


def write_json(store: Store, stream: IO[str], statuses: Any = None) -> None:
    """A JSON list with one record per run (one line each), chunk by chunk."""
    separator = "[\n"
    for records in record_chunks(store, statuses):
        stream.write(separator + ",\n".join(map(json.dumps, records)))
        separator = ",\n"
    stream.write("[]\n" if separator == "[\n" else "\n]\n")


def write_yaml(store: Store, stream: IO[str], statuses: Any = None) -> None:
    """A YAML list with one mapping per run, chunk by chunk (with libyaml's emitter if there is one)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    empty = True
    for records in record_chunks(store, statuses):
        yaml.dump(records, stream, Dumper=dumper, sort_keys=False)
        empty = False
    if empty:
        yaml.dump([], stream, Dumper=dumper)


def write_parquet(store: Store, path: str | os.PathLike, statuses: Any = None, columns: Any = None) -> None:
    """The :func:`dataframe` as a Parquet file (needs pyarrow); values that Arrow cannot type
    (lists of mixed types, say) are written as JSON text."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise EnsembleError("write_parquet: needs pyarrow (pip install pyarrow, or pip install "
                            "'ensemble[parquet]')") from None
    from pandas.api.types import is_object_dtype

    frame = dataframe(store, statuses=statuses, columns=columns)
    for name in [n for n in frame.columns if is_object_dtype(frame[n])]:
        try:
            pa.array(frame[name], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            frame[name] = [_json_text(v) for v in frame[name]]
    pq.write_table(pa.Table.from_pandas(frame), os.fspath(path))


def _json_text(value: Any) -> str | None:
    """A table cell as JSON text; missing stays missing."""
    missing = value is None or (isinstance(value, float) and value != value)
    return None if missing else json.dumps(value)

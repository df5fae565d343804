"""Ensemble summaries: DataFrame, CSV, JSON and YAML.

pandas and yaml are imported only when a summary needs them, so the CLI's
status commands start fast.
"""
from __future__ import annotations

import json
from typing import IO, Any

from ensemble.store import Store

INDEX = "run_id"
BUILTIN_COLUMNS = ("status", "restarts", "step", "attempts", "start", "end", "elapsed", "run_dir", "message")
#: Names a sample label or result key cannot take as a column (they get a ``sample_``/``result_`` prefix).
RESERVED_COLUMNS = (INDEX, *BUILTIN_COLUMNS)


def records(store: Store) -> list[dict[str, Any]]:
    """One nested record per run: id, status, sample, result, restarts, timing, run_dir."""
    timing = store.timing()
    out = []
    for run in store.runs():
        start, end, attempts = timing.get(run["id"], (None, None, 0))
        out.append({
            "run_id": run["id"],
            "status": run["status"].label,
            "running": run["claimed_by"] is not None,
            "sample": run["sample"],
            "result": run["result"],
            "restarts": run["restarts"],
            "step": run["step"],
            "attempts": attempts,
            "start": start,
            "end": end,
            "elapsed": None if start is None or end is None else end - start,
            "run_dir": run["run_dir"],
            "message": run["message"],
        })
    return out


def _flat_row(record: dict[str, Any]) -> dict[str, Any]:
    row = {(f"sample_{key}" if key in RESERVED_COLUMNS else key): value for key, value in record["sample"].items()}
    result = record["result"]
    items = result.items() if isinstance(result, dict) else [("result", result)]
    for key, value in items:
        name = key if key not in row and key not in RESERVED_COLUMNS else f"result_{key}"
        row[name] = value
    for column in BUILTIN_COLUMNS:
        row[column] = record[column]
    return row


def dataframe(store: Store, include_none: bool = True):
    """DataFrame indexed by ``run_id``: sample labels, result keys, then the built-in columns.

    A dict result contributes one column per key; any other result is one
    ``result`` column.  A sample label equal to ``run_id`` or a built-in
    column is prefixed ``sample_``; a result key equal to a sample label,
    ``run_id`` or a built-in column is prefixed ``result_``.
    """
    import pandas as pd

    recs = [r for r in records(store) if include_none or r["result"] is not None]
    frame = pd.DataFrame([_flat_row(r) for r in recs], index=pd.Index([r["run_id"] for r in recs], name=INDEX))
    for column in ("start", "end"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], unit="s", utc=True)
    return frame


def write_csv(store: Store, stream: IO[str]) -> None:
    frame = dataframe(store)
    if not frame.empty:
        for column in frame.columns:
            if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
                frame[column] = frame[column].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    frame.to_csv(stream)


def write_json(store: Store, stream: IO[str]) -> None:
    json.dump(records(store), stream, indent=1)
    stream.write("\n")


def write_yaml(store: Store, stream: IO[str]) -> None:
    import yaml

    yaml.safe_dump(records(store), stream, sort_keys=False)

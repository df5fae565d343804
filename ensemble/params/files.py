"""Samples from CSV, JSON and YAML files."""
from __future__ import annotations

import json
import os
import reprlib
from pathlib import Path
from typing import Any

import yaml

from ensemble.errors import EnsembleError
from ensemble.params.checks import Sample
from ensemble.spec import files as cliinput
from ensemble.spec import normalise_sample

#: File name suffixes and the format each one means.
FORMATS = {".csv": "csv", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}


def read_samples(path: str | os.PathLike[str], format: str | None = None) -> list[Sample]:
    """The samples in a file, one per run; the format follows the suffix unless ``format`` names it.

    * CSV (``.csv``): a header row of labels and one row per sample; cells that
      read as numbers become int or float (as for ``ensemble create``).
    * JSON (``.json``): a list of objects, ``[{"x": 1, "y": "a"}, ...]``.
    * YAML (``.yaml``, ``.yml``): a list of mappings, ``- {x: 1, y: a}``.

    Every problem is an :class:`~ensemble.errors.EnsembleError` naming the file
    and the place: a missing or non-UTF-8 file, a syntax error (with its line),
    a document that is not a non-empty list, an item that is not a mapping, a
    label that is not a string, NaN or infinity, ...

    >>> import pathlib, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = pathlib.Path(tmp.name)
    >>> _ = (folder / "runs.yaml").write_text("- {x: 1, mesh: fine}\\n- {x: 2.5, mesh: coarse}\\n")
    >>> read_samples(folder / "runs.yaml")
    [{'x': 1, 'mesh': 'fine'}, {'x': 2.5, 'mesh': 'coarse'}]
    >>> _ = (folder / "runs.json").write_text('{"x": 1}')
    >>> read_samples(folder / "runs.json")
    Traceback (most recent call last):
    ...
    ensemble.errors.EnsembleError: samples: '.../runs.json': expected a list with one sample per run, got dict {'x': 1}
    >>> tmp.cleanup()
    """
    name = os.fspath(path)
    kind = _format(name, format)
    if kind == "csv":
        return cliinput.read_samples(name)
    text = _read(name)
    if not text.strip():
        raise EnsembleError(f"samples: {name!r} is empty (expected a list with one sample per run)")
    return _checked(name, _parse_json(name, text) if kind == "json" else _parse_yaml(name, text))


def _format(name: str, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS.values():
            raise EnsembleError(f"samples: format must be one of 'csv', 'json', 'yaml', got {format!r}")
        return format
    suffix = Path(name).suffix.lower()
    if suffix not in FORMATS:
        raise EnsembleError(f"samples: {name!r}: cannot tell the format from the suffix {suffix!r} "
                            f"(use {', '.join(FORMATS)} or pass format='csv', 'json' or 'yaml')")
    return FORMATS[suffix]


def _read(name: str) -> str:
    try:
        with open(name, encoding="utf-8") as stream:
            return stream.read()
    except OSError as exc:
        raise EnsembleError(f"samples: cannot read {name!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise EnsembleError(f"samples: {name!r} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _parse_json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise EnsembleError(f"samples: {name!r} line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _parse_yaml(name: str, text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise EnsembleError(f"samples: {name!r}{where}: {problem}") from None


def _checked(name: str, data: Any) -> list[Sample]:
    if not isinstance(data, list):
        raise EnsembleError(f"samples: {name!r}: expected a list with one sample per run, "
                            f"got {type(data).__name__} {reprlib.repr(data)}")
    if not data:
        raise EnsembleError(f"samples: {name!r} holds an empty list (expected one sample per run)")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise EnsembleError(f"samples: {name!r}[{i}]: expected a mapping of labels to values, got {item!r}")
    return [normalise_sample(item, f"samples: {name!r}[{i}]") for i, item in enumerate(data)]

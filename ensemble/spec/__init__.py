"""The ensemble specification: plain, validated, JSON-serialisable data.

Nothing here touches the disk or the database.  Every constructor validates its
arguments at once and raises :class:`~ensemble.errors.SpecError` (a
``ValueError``) or :class:`~ensemble.errors.SpecTypeError` (a ``TypeError``)
naming the field and the offending value.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ensemble.errors import SpecError, SpecTypeError

#: Largest JSON size of one sample; samples travel to the application in an
#: environment variable, whose per-string limit on Linux is 128 KiB.
MAX_SAMPLE_BYTES = 64 * 1024


def _json_default(value: Any) -> Any:
    """Turn numpy scalars and arrays (and anything alike) into plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{value!r} of type {type(value).__name__} is not JSON-serialisable")


#: Compact encoders, made once: ``json.dumps`` with options builds a new encoder per call.
_ENCODERS = {allow_nan: json.JSONEncoder(default=_json_default, separators=(",", ":"), allow_nan=allow_nan)
             for allow_nan in (False, True)}
#: Sample values whose JSON form decodes to an equal value of the same type.
_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})


def _dumps(value: Any, allow_nan: bool) -> str:
    return _ENCODERS[allow_nan].encode(value)


def _json_items(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    """Every scalar and mapping key of plain JSON data with its path, e.g. ``sample['x'][0]``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path} label", key
            yield from _json_items(item, f"{path}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _json_items(item, f"{path}[{i}]")
    else:
        yield path, value


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def to_json(value: Any, what: str) -> str:
    """Serialise ``value`` to compact, strict JSON or raise an error naming ``what``.

    NaN and infinity are refused (SpecError naming the offending item): they
    are not JSON, and SQLite's JSON functions reject them.  Anything that is
    not JSON-serialisable raises SpecTypeError.
    """
    try:
        return _dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        error = exc
    try:
        plain = json.loads(_dumps(value, allow_nan=True))
    except (TypeError, ValueError):
        raise SpecTypeError(f"{what}: {error}") from None
    path, bad = next(((p, v) for p, v in _json_items(plain, what) if _is_non_finite(v)), (what, value))
    raise SpecError(f"{path}: NaN and infinity cannot be stored (use None or a string), got {bad!r}")


def check_text(name: str, value: str) -> str:
    """Return ``value``; raise SpecError if it holds a NUL byte, which no command line, path or environment can."""
    if "\0" in value:
        raise SpecError(f"{name}: must not contain a NUL byte, got {value!r}")
    return value


def _plain_scalar(value: Any) -> Any:
    """The Python value of a numpy(-like) scalar (via ``item()``); anything else unchanged."""
    item = getattr(value, "item", None)
    if isinstance(value, (bool, int, float, str)) or not callable(item):
        return value
    try:
        return item()
    except (TypeError, ValueError):
        return value


def _check_int(name: str, value: Any, minimum: int) -> int:
    if type(value) is int and value >= minimum:
        return value
    plain = _plain_scalar(value)
    if isinstance(plain, bool) or not isinstance(plain, int):
        raise SpecTypeError(f"{name}: expected an integer, got {value!r}")
    if plain < minimum:
        raise SpecError(f"{name}: must be >= {minimum}, got {value!r}")
    return int(plain)


def _check_timeout(name: str, value: Any) -> float:
    if type(value) in (int, float) and 0 <= value < math.inf:
        return float(value)
    plain = _plain_scalar(value)
    if isinstance(plain, bool) or not isinstance(plain, (int, float)):
        raise SpecTypeError(f"{name}: expected a number of minutes, got {value!r}")
    if not math.isfinite(plain) or plain < 0:
        raise SpecError(f"{name}: must be a finite number of minutes >= 0, got {value!r}")
    return float(plain)


def _check_args(name: str, args: Any) -> list[str]:
    if isinstance(args, str):
        check_text(name, args)
        try:
            parts = shlex.split(args)
        except ValueError as exc:
            raise SpecError(f"{name}: cannot split {args!r}: {exc}") from None
    elif isinstance(args, os.PathLike):
        parts = [check_text(name, os.fspath(args))]
    elif isinstance(args, Sequence) and not isinstance(args, (bytes, bytearray)):
        parts = []
        for i, arg in enumerate(args):
            if isinstance(arg, bool) or not isinstance(arg, (str, os.PathLike, numbers.Real)):
                raise SpecTypeError(f"{name}[{i}]: expected a string, got {arg!r}")
            parts.append(check_text(f"{name}[{i}]", os.fspath(arg) if isinstance(arg, os.PathLike) else str(arg)))
    else:
        raise SpecTypeError(f"{name}: expected a string or a sequence of strings, got {args!r}")
    return parts


def normalise_sample(sample: Any, what: str = "sample") -> dict[str, Any]:
    """Validate a sample mapping and return a plain-JSON copy of it.

    Labels and string values may not hold NUL bytes (they fill run directory
    names, command lines and input decks); numbers must be finite.
    """
    if sample is None:
        return {}
    if not isinstance(sample, Mapping):
        raise SpecTypeError(f"{what}: expected a mapping of labels to values, got {sample!r}")
    for key in sample:
        if not isinstance(key, str):
            raise SpecTypeError(f"{what}: labels must be strings, got {key!r}")
    text = to_json(dict(sample), what)
    if len(text) > MAX_SAMPLE_BYTES:  # the text is ASCII: one byte per character
        raise SpecError(f"{what}: JSON form is {len(text)} bytes, more than the limit of {MAX_SAMPLE_BYTES}")
    flat = all(type(value) in _PLAIN_SCALARS for value in sample.values())
    plain = dict(sample) if flat else json.loads(text)
    if "\\u0000" in text:  # a NUL byte somewhere in a label or a string value: find and name it
        for path, item in _json_items(plain, what):
            if isinstance(item, str):
                check_text(path, item)
    return plain


@dataclass(frozen=True)
class Step:
    """One application launch within a run.

    Args:
        args: the application and its arguments, as a list or as one string
            (split with :func:`shlex.split`).
        tasks: total tasks (MPI ranks); ``srun -n``.
        cores_per_task: cores per task; ``srun -c``.
        gpus_per_task: GPUs per task.
        timeout: limit in minutes (fractions allowed); 0 means no limit.
        batch_script: ``args[0]`` is a text script that is parsed for
            ``%%token%%`` and copied into ``cwd`` before it runs.
        cwd: working directory, relative to the run directory unless absolute.
    """

    args: Sequence[str] | str
    tasks: int = 1
    cores_per_task: int = 1
    gpus_per_task: int = 0
    timeout: float = 0
    batch_script: bool = True
    cwd: str = "."

    def __post_init__(self) -> None:
        args = _check_args("Step.args", self.args)
        if not args or not args[0]:
            raise SpecError(f"Step.args: must name an application, got {self.args!r}")
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "tasks", _check_int("Step.tasks", self.tasks, 1))
        object.__setattr__(self, "cores_per_task", _check_int("Step.cores_per_task", self.cores_per_task, 1))
        object.__setattr__(self, "gpus_per_task", _check_int("Step.gpus_per_task", self.gpus_per_task, 0))
        object.__setattr__(self, "timeout", _check_timeout("Step.timeout", self.timeout))
        if not isinstance(self.batch_script, bool):
            raise SpecTypeError(f"Step.batch_script: expected True or False, got {self.batch_script!r}")
        if not isinstance(self.cwd, (str, os.PathLike)):
            raise SpecTypeError(f"Step.cwd: expected a path, got {self.cwd!r}")
        if not os.fspath(self.cwd):
            raise SpecError(f"Step.cwd: must be a non-empty path, got {self.cwd!r}")
        object.__setattr__(self, "cwd", check_text("Step.cwd", os.fspath(self.cwd)))

    @property
    def cores(self) -> int:
        """Cores the step occupies: ``tasks * cores_per_task``."""
        return self.tasks * self.cores_per_task

    @property
    def gpus(self) -> int:
        """GPUs the step occupies: ``tasks * gpus_per_task``."""
        return self.tasks * self.gpus_per_task

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (the fields in order; every one is a plain value already)."""
        return {"args": list(self.args), "tasks": self.tasks, "cores_per_task": self.cores_per_task,
                "gpus_per_task": self.gpus_per_task, "timeout": self.timeout, "batch_script": self.batch_script,
                "cwd": self.cwd}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Step":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass(frozen=True)
class CompositeRun:
    """One run of an ensemble: a sample and the steps executed in order.

    Args:
        sample: mapping of labels to JSON-serialisable values, used to fill
            ``%%label%%`` tokens and reported in summaries.
        steps: non-empty sequence of :class:`Step`.
    """

    sample: Mapping[str, Any] | None
    steps: Sequence[Step] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample", normalise_sample(self.sample, "CompositeRun.sample"))
        if isinstance(self.steps, (str, bytes)) or not isinstance(self.steps, Sequence):
            raise SpecTypeError(f"CompositeRun.steps: expected a sequence of Step, got {self.steps!r}")
        if not self.steps:
            raise SpecError("CompositeRun.steps: must hold at least one Step, got an empty sequence")
        for i, step in enumerate(self.steps):
            if not isinstance(step, Step):
                raise SpecTypeError(f"CompositeRun.steps[{i}]: expected a Step, got {step!r}")
        object.__setattr__(self, "steps", tuple(self.steps))

    def steps_json(self) -> str:
        """The steps as one JSON array."""
        return json.dumps([s.to_dict() for s in self.steps], separators=(",", ":"))


@dataclass(frozen=True)
class Run:
    """A one-step run of the ensemble-wide ``application``.

    Args:
        sample: as for :class:`CompositeRun`.
        args: command-line arguments appended to the application (string or list).
        tasks, cores_per_task, gpus_per_task, timeout: as for :class:`Step`.
    """

    sample: Mapping[str, Any] | None = None
    args: Sequence[str] | str | None = None
    tasks: int = 1
    cores_per_task: int = 1
    gpus_per_task: int = 0
    timeout: float = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sample", normalise_sample(self.sample, "Run.sample"))
        args = [] if self.args is None else _check_args("Run.args", self.args)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "tasks", _check_int("Run.tasks", self.tasks, 1))
        object.__setattr__(self, "cores_per_task", _check_int("Run.cores_per_task", self.cores_per_task, 1))
        object.__setattr__(self, "gpus_per_task", _check_int("Run.gpus_per_task", self.gpus_per_task, 0))
        object.__setattr__(self, "timeout", _check_timeout("Run.timeout", self.timeout))

    def to_composite(self, application: str, batch_script: bool) -> CompositeRun:
        """The equivalent :class:`CompositeRun` for a given application."""
        step = Step(
            [application, *self.args],
            tasks=self.tasks,
            cores_per_task=self.cores_per_task,
            gpus_per_task=self.gpus_per_task,
            timeout=self.timeout,
            batch_script=batch_script,
        )
        return CompositeRun(self.sample, [step])

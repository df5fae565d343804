"""Turn user-supplied runs into validated database rows, in bounded batches.

Everything a run needs is checked here before it is written: types, the
application, batch scripts (text, found), template tokens against each sample,
and unique run directories (the ``UNIQUE`` index on ``runs.run_dir`` finds a
repeated one; :func:`insert_runs` turns that into an error naming the run).
Work that is the same for many runs (steps, scripts, the labels a sample has)
is done once and cached.
"""
from __future__ import annotations

import json
import os
import sqlite3
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ensemble.errors import SpecError, SpecTypeError, TemplateError
from ensemble.spec import MAX_SAMPLE_BYTES, CompositeRun, Run, Step, normalise_sample, to_json
from ensemble.spec.config import EnsembleConfig, resolve_executable
from ensemble.spec.samplehash import sample_hash
from ensemble.spec.templating import RESERVED_TOKENS, Template

if TYPE_CHECKING:
    from ensemble.store import Store

Row = tuple[str, str, str]
#: Tokens of the files a run renders: file path -> token name -> first line it appears on.
FileTokens = dict[str, dict[str, int]]
#: Runs validated and inserted at a time: memory stays bounded however many runs there are.
BATCH_SIZE = 10_000
#: Most entries a cache of the intake keeps (it starts afresh when full): a study has few distinct
#: programs, steps and label sets, but each of its runs may have arguments of its own.
CACHE_SIZE = 10_000


class Program(NamedTuple):
    """An application as it runs: its path, whether it is a batch script, the tokens it needs."""

    path: str
    batch_script: bool
    tokens: FileTokens


class StepsEntry(NamedTuple):
    """A run's steps as stored, the tokens of their scripts, and those tokens' names (hashable)."""

    json: str
    tokens: FileTokens
    names: tuple


def _remember(cache: dict, key: Any, value: Any) -> Any:
    """Store ``value`` in ``cache`` (emptied first when it holds :data:`CACHE_SIZE` entries)."""
    if len(cache) >= CACHE_SIZE:
        cache.clear()
    cache[key] = value
    return value


def new_samples(runs: Iterable[Any] | None, store: Any) -> list[Any]:
    """``runs`` without those whose sample ``store`` has already, or an earlier run of ``runs`` has
    (by :func:`~ensemble.spec.samplehash.sample_hash`).  Anything that is not a run is kept, for
    :class:`RunIntake` to refuse with its usual error."""
    if runs is None or isinstance(runs, (Run, CompositeRun)):
        runs = [] if runs is None else [runs]
    if isinstance(runs, (str, bytes)) or not isinstance(runs, Iterable):
        return runs
    runs = list(runs)
    hashes = [sample_hash(r.sample) if isinstance(r, (Run, CompositeRun)) else None for r in runs]
    seen = store.existing_sample_hashes({h for h in hashes if h is not None})
    kept = []
    for run, digest in zip(runs, hashes):
        if digest is None or digest not in seen:
            kept.append(run)
            seen.add(digest)
    return kept


class RunIntake:
    """Validates runs for one ensemble, caching per-program, per-step and per-label-set work."""

    def __init__(self, config: EnsembleConfig, progress: Callable[[int], None] | None = None) -> None:
        if progress is not None and not callable(progress):
            raise SpecTypeError(f"progress: expected a callable or None, got {progress!r}")
        self.config = config
        #: Called with 1 as each run has been checked (the command line's progress bar).
        self.progress = progress
        self.root = Path(config.root_dir)
        self._root_text = str(self.root)
        self.parse_tokens = self._parse_tokens()
        self._programs: dict[tuple[str, bool], Program] = {}
        self._steps: dict[tuple[Step, ...], StepsEntry] = {}
        self._run_steps: dict[tuple, StepsEntry] = {}
        self._labels_ok: dict[tuple, bool] = {}

    def _parse_tokens(self) -> FileTokens:
        tokens = {}
        for path in self.config.run_parse:
            template = Template.load(path, self.config.template_engine, self.config.strict_templates)
            tokens[path] = template.tokens()
        return tokens

    @staticmethod
    def iterable(runs: Iterable[Any] | None) -> Iterable[Any]:
        """``runs`` as an iterable of runs (one run alone, or None, allowed); raise if it is none."""
        if runs is None:
            return ()
        if isinstance(runs, (Run, CompositeRun)):
            return (runs,)
        if isinstance(runs, (str, bytes)) or not isinstance(runs, Iterable):
            raise SpecTypeError(f"runs: expected an iterable of Run or CompositeRun, got {runs!r}")
        return runs

    def batches(self, runs: Iterable[Any] | None, first_id: int) -> Iterator[list[Row]]:
        """Validated ``(sample_json, steps_json, run_dir)`` rows for ids from ``first_id``,
        :data:`BATCH_SIZE` at a time."""
        batch: list[Row] = []
        for index, run in enumerate(self.iterable(runs)):
            batch.append(self.row(run, first_id + index, index))
            if self.progress is not None:
                self.progress(1)
            if len(batch) == BATCH_SIZE:
                yield batch
                batch = []
        if batch:
            yield batch

    def row(self, run: Any, run_id: int, index: int) -> Row:
        """One validated row: run ``index`` of the input, to get id ``run_id``."""
        if isinstance(run, Run):
            steps = self._run_entry(run, index)
        elif isinstance(run, CompositeRun):
            steps = self._steps_entry(run.steps, index)
        else:
            raise SpecTypeError(f"runs[{index}]: expected a Run or CompositeRun, got {run!r}")
        sample = run.sample
        labels = (steps.names, tuple(sample))
        if labels not in self._labels_ok:
            self._check_tokens(sample, steps.tokens, run_id)
            _remember(self._labels_ok, labels, True)
        return self._sample_json(sample, index), steps.json, self._run_dir(sample, run_id)

    @staticmethod
    def _sample_json(sample: dict[str, Any], index: int) -> str:
        """The sample's JSON; a sample changed since its run was made is checked again in full."""
        what = f"runs[{index}].sample"
        text = to_json(sample, what)
        if len(text) > MAX_SAMPLE_BYTES or "\\u0000" in text:
            normalise_sample(sample, what)
        return text

    def _run_entry(self, run: Run, index: int) -> StepsEntry:
        """The one step of a :class:`~ensemble.Run` (its fields were checked when it was made)."""
        if self.config.application is None:
            raise SpecError(f"application: required because runs[{index}] is a Run, got None")
        key = (run.args, run.tasks, run.cores_per_task, run.gpus_per_task, run.timeout)
        entry = self._run_steps.get(key)
        if entry is None:
            program = self._program(self.config.application, self.config.app_is_batch_script,
                                    f"runs[{index}].steps[0]")
            step = {"args": [program.path, *run.args], "tasks": run.tasks, "cores_per_task": run.cores_per_task,
                    "gpus_per_task": run.gpus_per_task, "timeout": run.timeout,
                    "batch_script": program.batch_script, "cwd": "."}
            entry = _remember(self._run_steps, key, _steps_entry([step], [program]))
        return entry

    def _steps_entry(self, steps: tuple[Step, ...], index: int) -> StepsEntry:
        entry = self._steps.get(steps)
        if entry is None:
            programs = [self._program(step.args[0], step.batch_script, f"runs[{index}].steps[{k}]")
                        for k, step in enumerate(steps)]
            resolved = [{**step.to_dict(), "args": [program.path, *step.args[1:]], "batch_script": program.batch_script}
                        for step, program in zip(steps, programs)]
            entry = _remember(self._steps, steps, _steps_entry(resolved, programs))
        return entry

    def _program(self, name: str, batch_script: bool, where: str) -> Program:
        key = (name, batch_script)
        program = self._programs.get(key)
        if program is None:
            program = _remember(self._programs, key, self._resolve_program(name, batch_script, where))
        return program

    def _resolve_program(self, name: str, batch_script: bool, where: str) -> Program:
        path = resolve_executable(name, self.root)
        if not batch_script:
            local_file = path is not None and os.path.exists(self.root / name)
            return Program(path if local_file else name, False, {})
        if path is None or not os.path.isfile(path):
            raise SpecError(f"{where}.args[0]: batch script {name!r} not found (relative to {self.root} or on PATH)")
        try:
            template = Template.load(path, self.config.template_engine, self.config.strict_templates)
        except TemplateError:
            warnings.warn(f"{where}.args[0]: {path!r} is not a text script; it runs as a plain executable "
                          "(pass batch_script=False / app_is_batch_script=False to silence this)", stacklevel=4)
            return Program(path, False, {})
        return Program(path, True, {path: template.tokens()})

    def _check_tokens(self, sample: dict[str, Any], step_tokens: FileTokens, run_id: int) -> None:
        reserved = set(sample).intersection(RESERVED_TOKENS)
        if reserved:
            raise SpecError(f"sample of run {run_id}: label {sorted(reserved)[0]!r} is reserved "
                            f"(reserved: {', '.join(RESERVED_TOKENS)})")
        if not self.config.strict_templates:
            return
        known = set(sample).union(RESERVED_TOKENS)
        for source, tokens in [*self.parse_tokens.items(), *step_tokens.items()]:
            missing = [name for name in tokens if name not in known]
            if missing:
                name = missing[0]
                raise TemplateError(f"{source}, line {tokens[name]}: token %%{name}%% is not a label of run "
                                    f"{run_id}'s sample {sample!r} (escape it as \\%%name%% or pass "
                                    "strict_templates=False)")

    def _run_dir(self, sample: dict[str, Any], run_id: int) -> str:
        try:
            name = self.config.run_dir_names.format(**sample, run_id=run_id)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError) as exc:
            raise SpecError(f"run_dir_names: {self.config.run_dir_names!r} cannot be formatted for run {run_id} "
                            f"with sample {sample!r}: {exc!r}") from None
        return os.path.normpath(os.path.join(self._root_text, name))

    def duplicate_dir(self, run_id: int, run_dir: str) -> SpecError:
        """The error for a run whose directory another run already has."""
        return SpecError(f"run_dir_names: {self.config.run_dir_names!r} gives run {run_id} the directory "
                         f"{run_dir!r}, which another run already has; include {{run_id}} or more labels")


def _steps_entry(steps: list[dict[str, Any]], programs: list[Program]) -> StepsEntry:
    tokens: FileTokens = {}
    for program in programs:
        tokens.update(program.tokens)
    return StepsEntry(json.dumps(steps, separators=(",", ":")), tokens,
                      tuple((source, tuple(names)) for source, names in tokens.items()))


def insert_runs(store: Store, intake: RunIntake, runs: Iterable[Any] | None, first_id: int) -> int:
    """Validate and insert ``runs`` batch by batch (inside the caller's transaction); return how many.

    A repeated run directory raises :meth:`RunIntake.duplicate_dir` for the first run that repeats
    one; the caller's transaction (or temporary setup directory) is then thrown away.
    """
    count = 0
    for batch in intake.batches(runs, first_id):
        try:
            store.insert_runs(first_id + count, batch)
        except sqlite3.IntegrityError as exc:
            repeat = _first_repeat(store, intake, first_id + count, batch) if "runs.run_dir" in str(exc) else None
            if repeat is None:
                raise
            raise repeat from None
        count += len(batch)
    return count


def _first_repeat(store: Store, intake: RunIntake, first_id: int, batch: list[Row]) -> SpecError | None:
    """The error naming the first run of ``batch`` whose directory an earlier run holds.

    The rows before it are in the database (inside the open transaction) under their own ids.
    """
    for run_id, (_, _, run_dir) in enumerate(batch, first_id):
        owner = store.run_with_dir(run_dir)
        if owner is not None and owner != run_id:
            return intake.duplicate_dir(run_id, run_dir)
    return None

"""Turn user-supplied runs into validated database rows.

Everything a run needs is checked here, for all runs, before anything is
written: types, the application, batch scripts (text, found), template tokens
against each sample, and unique run directories.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ensemble.config import EnsembleConfig, resolve_executable
from ensemble.errors import SpecError, SpecTypeError, TemplateError
from ensemble.samplehash import sample_hash
from ensemble.spec import CompositeRun, Run, Step, to_json
from ensemble.templating import RESERVED_TOKENS, Template

Row = tuple[str, str, str]
#: Tokens of the files a run renders: file path -> token name -> first line it appears on.
FileTokens = dict[str, dict[str, int]]


def new_samples(runs: Iterable[Any] | None, store: Any) -> list[Any]:
    """``runs`` without those whose sample ``store`` has already, or an earlier run of ``runs`` has
    (by :func:`~ensemble.samplehash.sample_hash`).  Anything that is not a run is kept, for
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
    """Validates runs for one ensemble, caching per-file and per-step work."""

    def __init__(self, config: EnsembleConfig, existing_dirs: set[str] | None = None) -> None:
        self.config = config
        self.root = Path(config.root_dir)
        self.dirs = set(existing_dirs or ())
        self.parse_tokens = self._parse_tokens()
        self._steps: dict[tuple[Step, ...], tuple[str, FileTokens]] = {}
        self._scripts: dict[tuple[str, bool], tuple[Step, FileTokens]] = {}

    def _parse_tokens(self) -> FileTokens:
        tokens = {}
        for path in self.config.run_parse:
            template = Template.load(path, self.config.template_engine, self.config.strict_templates)
            tokens[path] = template.tokens()
        return tokens

    def rows(self, runs: Iterable[Any] | None, first_id: int,
             progress: Callable[[int], None] | None = None) -> list[Row]:
        """Validated ``(sample_json, steps_json, run_dir)`` rows for ids from ``first_id``;
        ``progress(1)`` is called after each run is checked."""
        if runs is None:
            return []
        if isinstance(runs, (Run, CompositeRun)):
            runs = [runs]
        if isinstance(runs, (str, bytes)) or not isinstance(runs, Iterable):
            raise SpecTypeError(f"runs: expected an iterable of Run or CompositeRun, got {runs!r}")
        if progress is not None and not callable(progress):
            raise SpecTypeError(f"progress: expected a callable or None, got {progress!r}")
        rows = []
        for i, run in enumerate(runs):
            rows.append(self.row(run, first_id + i, i))
            if progress is not None:
                progress(1)
        return rows

    def row(self, run: Any, run_id: int, index: int) -> Row:
        composite = self._composite(run, index)
        steps_json, step_tokens = self._steps_entry(composite.steps, index)
        sample = composite.sample
        self._check_tokens(sample, step_tokens, run_id)
        run_dir = self._run_dir(sample, run_id)
        return to_json(sample, f"runs[{index}].sample"), steps_json, run_dir

    def _composite(self, run: Any, index: int) -> CompositeRun:
        if isinstance(run, CompositeRun):
            return run
        if isinstance(run, Run):
            if self.config.application is None:
                raise SpecError(f"application: required because runs[{index}] is a Run, got None")
            return run.to_composite(self.config.application, self.config.app_is_batch_script)
        raise SpecTypeError(f"runs[{index}]: expected a Run or CompositeRun, got {run!r}")

    def _steps_entry(self, steps: tuple[Step, ...], index: int) -> tuple[str, FileTokens]:
        entry = self._steps.get(steps)
        if entry is None:
            resolved, tokens = [], {}
            for k, step in enumerate(steps):
                step, step_tokens = self._resolve_step(step, f"runs[{index}].steps[{k}]")
                resolved.append(step.to_dict())
                tokens.update(step_tokens)
            entry = (json.dumps(resolved, separators=(",", ":")), tokens)
            self._steps[steps] = entry
        return entry

    def _resolve_step(self, step: Step, where: str) -> tuple[Step, FileTokens]:
        key = (step.args[0], step.batch_script)
        cached = self._scripts.get(key)
        if cached is None:
            cached = self._resolve_program(step, where)
            self._scripts[key] = cached
        program, tokens = cached
        return replace(step, args=(program.args[0], *step.args[1:]), batch_script=program.batch_script), tokens

    def _resolve_program(self, step: Step, where: str) -> tuple[Step, FileTokens]:
        path = resolve_executable(step.args[0], self.root)
        if not step.batch_script:
            local_file = path is not None and os.path.exists(self.root / step.args[0])
            return replace(step, args=(path if local_file else step.args[0],)), {}
        if path is None or not os.path.isfile(path):
            raise SpecError(f"{where}.args[0]: batch script {step.args[0]!r} not found "
                            f"(relative to {self.root} or on PATH)")
        try:
            template = Template.load(path, self.config.template_engine, self.config.strict_templates)
        except TemplateError:
            warnings.warn(f"{where}.args[0]: {path!r} is not a text script; it runs as a plain executable "
                          "(pass batch_script=False / app_is_batch_script=False to silence this)", stacklevel=4)
            return replace(step, args=(path,), batch_script=False), {}
        return replace(step, args=(path,)), {path: template.tokens()}

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
        run_dir = os.path.normpath(self.root / name)
        if run_dir in self.dirs:
            raise SpecError(f"run_dir_names: {self.config.run_dir_names!r} gives run {run_id} the directory "
                            f"{run_dir!r}, which another run already has; include {{run_id}} or more labels")
        self.dirs.add(run_dir)
        return run_dir

"""The :class:`Ensemble` manager: create, open, query and control an ensemble."""
from __future__ import annotations

import json
import numbers
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from ensemble.config import EnsembleConfig, build_config
from ensemble.control import submit
from ensemble.errors import EnsembleError, EnsembleExists, SpecError, SpecTypeError
from ensemble.hooks import call_hook, load_interface
from ensemble.intake import RunIntake
from ensemble.lease import live_leases
from ensemble.rundir import RunDirPreparer, step_cwd
from ensemble.runtime import CONFIG_FILE
from ensemble.spec import _check_args, check_text, to_json
from ensemble.status import COMPLETED, RUN_ABORTED, RUN_FAILURE, RUN_KILLED, RUN_QUEUED, RUN_SUCCESS, RunStatus
from ensemble.store import Store

DEFAULT_SETUP_DIR = "./.ensemble_setup"
LOG_DIR = "logs"
INBOX_DIR = "inbox"
#: ``create`` options that become paths or command lines.
TEXT_OPTIONS = ("application", "run_parse", "run_copy", "run_symlink", "run_dir_names", "app_interface", "use_flux")
#: Most missing run ids an error message lists.
MAX_LISTED_IDS = 10


def _setup_path(setup_dir: str | os.PathLike) -> Path:
    if not isinstance(setup_dir, (str, os.PathLike)) or not os.fspath(setup_dir):
        raise SpecTypeError(f"setup_dir: expected a directory path, got {setup_dir!r}")
    return Path(os.path.abspath(check_text("setup_dir", str(os.fspath(setup_dir)))))


def _check_option_text(options: dict[str, Any]) -> None:
    """Refuse NUL bytes in the ``create`` options that become paths or command lines."""
    for name in TEXT_OPTIONS:
        value = options[name]
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, os.PathLike)):
                check_text(name, str(os.fspath(item)))


def _optional_path(name: str, value: Any) -> str | None:
    """The absolute form of an optional path argument."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise SpecTypeError(f"{name}: expected a file path or None, got {value!r}")
    return os.path.abspath(check_text(name, str(os.fspath(value))))


def format_ids(ids: Sequence[int]) -> str:
    """Sorted ids as ranges, ``1-3, 7``; at most MAX_LISTED_IDS ranges, then how many more ids."""
    groups: list[list[int]] = []
    for run_id in sorted(set(ids)):
        if groups and run_id == groups[-1][1] + 1:
            groups[-1][1] = run_id
        else:
            groups.append([run_id, run_id])
    text = [str(a) if a == b else f"{a}-{b}" for a, b in groups[:MAX_LISTED_IDS]]
    rest = sum(b - a + 1 for a, b in groups[MAX_LISTED_IDS:])
    return ", ".join(text) + (f" and {rest} more" if rest else "")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _run_ids(run_ids: Any, what: str = "run_ids") -> list[int]:
    if _is_int(run_ids):
        run_ids = [run_ids]
    if isinstance(run_ids, (str, bytes)) or not isinstance(run_ids, Iterable):
        raise SpecTypeError(f"{what}: expected an iterable of integer run ids, got {run_ids!r}")
    ids = list(run_ids)
    for run_id in ids:
        if not _is_int(run_id):
            raise SpecTypeError(f"{what}: expected integer run ids, got {run_id!r}")
    return [int(i) for i in ids]


def _run_id(run_id: Any) -> int:
    if not _is_int(run_id):
        raise SpecTypeError(f"run_id: expected one integer run id, got {run_id!r}")
    return int(run_id)


class Ensemble:
    """Handle to an ensemble stored in a setup directory.

    ``Ensemble(setup_dir)`` opens an existing ensemble; use :meth:`create`
    (or :meth:`create_overwrite`, :meth:`create_resume`) to make one.
    """

    RUN_QUEUED = RUN_QUEUED
    RUN_SUCCESS = RUN_SUCCESS
    RUN_FAILURE = RUN_FAILURE
    RUN_ABORTED = RUN_ABORTED
    RUN_KILLED = RUN_KILLED

    def __init__(self, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR) -> None:
        self.setup_dir = _setup_path(setup_dir)
        if not self.exists(self.setup_dir):
            raise EnsembleError(f"setup_dir: no ensemble in {str(self.setup_dir)!r} (create one first)")
        self.store = Store.open(self.setup_dir)
        self.config = EnsembleConfig.from_dict(self.store.get_meta("config"))

    def __repr__(self) -> str:
        return f"Ensemble({str(self.setup_dir)!r})"

    def close(self) -> None:
        """Close the database connection."""
        self.store.close()

    def __enter__(self) -> "Ensemble":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- creating ----------------------------------------------------------------
    @classmethod
    def create(cls, application: str | None = None, runs: Iterable[Any] | None = None, run_parse: Any = None,
               run_copy: Any = None, run_symlink: Any = None, run_dir_names: str | None = None,
               app_interface: str | None = None, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR,
               max_restarts: int | None = 0, max_failed_runs: int | None = None, app_is_batch_script: bool = True,
               use_flux: bool | str = False, abort_on: Sequence[int] | None = None, *,
               template_engine: str = "tokens", strict_templates: bool = True) -> "Ensemble":
        """Create a new ensemble and return a handle to it.

        Everything is validated before anything is written; the setup
        directory appears atomically (it is built under a temporary name and
        renamed), so a failure or Ctrl-C leaves no setup directory behind.

        Args:
            application: program run by :class:`~ensemble.Run` objects.
            runs: iterable of :class:`~ensemble.Run` / :class:`~ensemble.CompositeRun`;
                run ids are 1, 2, ... in this order.
            run_parse: path(s) or glob(s) of text files rendered into each run directory.
            run_copy: path(s) or glob(s) copied into each run directory.
            run_symlink: path(s) or glob(s) symlinked into each run directory.
            run_dir_names: format string over sample labels and ``run_id``;
                default ``runs/{run_id}`` relative to the current directory.
            app_interface: path to a Python module with hooks (see :mod:`ensemble.hooks`).
            setup_dir: where the ensemble's database and logs live.
            max_restarts: restarts per failed run (None: unlimited).
            max_failed_runs: stop the ensemble once more runs than this failed (None: no limit).
            app_is_batch_script: whether ``application`` is a script to parse.
            use_flux: launch steps through Flux (True, or the path to Flux).
            abort_on: exit codes that mark a run aborted, with no restart.
            template_engine: ``"tokens"`` (``%%name%%``) or ``"jinja"`` (opt-in Jinja2).
            strict_templates: unknown tokens are errors (False leaves them as they are).

        Raises:
            EnsembleExists: if an ensemble exists in ``setup_dir`` (a ``ValueError``).
            ValueError, TypeError: for invalid arguments, naming field and value.
        """
        return cls._create(dict(application=application, runs=runs, run_parse=run_parse, run_copy=run_copy,
                                run_symlink=run_symlink, run_dir_names=run_dir_names, app_interface=app_interface,
                                max_restarts=max_restarts, max_failed_runs=max_failed_runs,
                                app_is_batch_script=app_is_batch_script, use_flux=use_flux, abort_on=abort_on,
                                template_engine=template_engine, strict_templates=strict_templates),
                           setup_dir, overwrite=False)

    @classmethod
    def create_overwrite(cls, *args: Any, **kwargs: Any) -> "Ensemble":
        """Like :meth:`create`, replacing an existing ensemble (only once the new one is valid)."""
        return cls._create(*_split_create_args(args, kwargs), overwrite=True)

    @classmethod
    def create_resume(cls, *args: Any, **kwargs: Any) -> "Ensemble":
        """Open the ensemble in ``setup_dir`` if there is one, else create it like :meth:`create`."""
        options, setup_dir = _split_create_args(args, kwargs)
        if cls.exists(setup_dir):
            return cls(setup_dir)
        return cls._create(options, setup_dir, overwrite=False)

    @classmethod
    def _create(cls, options: dict[str, Any], setup_dir: str | os.PathLike, overwrite: bool) -> "Ensemble":
        setup = _setup_path(setup_dir)
        if cls.exists(setup) and not overwrite:
            raise EnsembleExists(f"setup_dir: an ensemble already exists in {str(setup)!r} "
                                 "(use create_overwrite or create_resume; ensemble create --overwrite)")
        if setup.exists() and not cls.exists(setup) and (not setup.is_dir() or any(setup.iterdir())):
            raise EnsembleError(f"setup_dir: {str(setup)!r} exists and is not an ensemble setup directory")
        runs = options.pop("runs")
        _check_option_text(options)
        config = build_config(Path.cwd(), **options)
        if config.app_interface:
            load_interface(config.app_interface)
        rows = RunIntake(config).rows(runs, 1)
        if overwrite and cls.exists(setup):
            _refuse_while_running(setup, "overwrite")
        first_missing = next((p for p in reversed([setup.parent, *setup.parent.parents]) if not p.exists()), None)
        tmp = setup.parent / f".{setup.name}.creating-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir(parents=True)
            _write_setup(tmp, config, rows)
            _install(tmp, setup)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if first_missing is not None:
                shutil.rmtree(first_missing, ignore_errors=True)
            raise
        return cls(setup)

    @classmethod
    def exists(cls, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR) -> bool:
        """Whether an ensemble's setup exists in ``setup_dir``."""
        return (_setup_path(setup_dir) / "ensemble.db").is_file()

    @classmethod
    def clear(cls, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR) -> None:
        """Remove the setup directory (database, logs, inbox); run directories are kept.

        Raises EnsembleError while a manager is executing the ensemble.
        """
        setup = _setup_path(setup_dir)
        if not cls.exists(setup):
            return
        _refuse_while_running(setup, "clear")
        shutil.rmtree(setup)

    # -- status ------------------------------------------------------------------
    def filter_by_status(self, *statuses: RunStatus | int | str) -> list[int]:
        """Run ids with any of the given statuses (all runs if none given), ascending."""
        return self.store.run_ids_with_status([RunStatus.parse(s) for s in statuses])

    def count_by_status(self, *statuses: RunStatus | int | str) -> int:
        """Number of runs with any of the given statuses (all runs if none given)."""
        counts = self.store.counts_by_status()
        wanted = [RunStatus.parse(s) for s in statuses] or list(RunStatus)
        return sum(counts[s] for s in set(wanted))

    def status_counts(self) -> dict[str, int]:
        """Counts for every status plus ``running`` (queued runs a manager has taken) and ``total``."""
        counts = {s.label: n for s, n in self.store.counts_by_status().items()}
        counts["running"] = self.store.count_running()
        counts["total"] = sum(counts[s.label] for s in RunStatus)
        return counts

    def count_running(self) -> int:
        """Number of queued runs a manager is executing right now."""
        return self.store.count_running()

    def progress(self) -> tuple[int, int]:
        """``(completed, total)``: succeeded, failed, aborted and killed runs are completed."""
        counts = self.store.counts_by_status()
        return sum(counts[s] for s in COMPLETED), sum(counts.values())

    def run_dirs(self, nonexistent: bool = False) -> list[tuple[int, str]]:
        """``(run_id, run_directory)`` pairs; only existing directories unless ``nonexistent``."""
        pairs = self.store.run_dirs()
        return pairs if nonexistent else [(i, d) for i, d in pairs if os.path.isdir(d)]

    def runs(self, run_ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Full records (sample, steps, status, result, ...) of the given runs, or all."""
        return self.store.runs(None if run_ids is None else _run_ids(run_ids))

    def attempts(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded attempts (start, end, host, exit code, signal, outcome, command)."""
        return self.store.attempts(run_id)

    def events(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded state changes, oldest first."""
        return self.store.events(run_id)

    # -- changing runs -------------------------------------------------------------
    def _submit(self, command: dict[str, Any]) -> str:
        return submit(self.setup_dir, self.store, self.config, command)

    def check_run_ids(self, run_ids: Iterable[int]) -> list[int]:
        """The ids as a list; raise SpecError naming the ids that are not runs of this ensemble."""
        ids = _run_ids(run_ids)
        self._check_existing(ids)
        return ids

    def _check_existing(self, ids: list[int], what: str = "run_ids") -> None:
        missing = sorted(set(ids) - self.store.existing_run_ids(ids))
        if missing:
            runs = "run" if len(missing) == 1 else "runs"
            raise SpecError(f"{what}: no {runs} {format_ids(missing)} in this ensemble "
                            f"(ids are 1..{self.store.next_run_id() - 1})")

    def add_runs(self, runs: Iterable[Any]) -> None:
        """Add runs; a running manager picks them up within a second."""
        first = self.store.next_run_id()
        rows = RunIntake(self.config, self.store.run_dir_set()).rows(runs, first)
        if rows:
            self._submit({"op": "add_runs", "runs": [{"sample": json.loads(s), "steps": json.loads(t)}
                                                     for s, t, _ in rows]})

    def dequeue_runs(self, run_ids: Iterable[int]) -> None:
        """Mark queued runs killed; a running manager also kills those in flight.

        Completed runs are left as they are.
        """
        ids = _run_ids(run_ids)
        self._check_existing(ids)
        self._submit({"op": "dequeue", "run_ids": ids})

    def requeue_runs(self, run_ids: Iterable[int], hard: bool = False) -> None:
        """Queue completed runs again; ``hard`` restarts them from step 0 with no restarts used.

        Runs still queued are left as they are.
        """
        ids = _run_ids(run_ids)
        if not isinstance(hard, bool):
            raise SpecTypeError(f"hard: expected True or False, got {hard!r}")
        self._check_existing(ids)
        self._submit({"op": "requeue", "run_ids": ids, "hard": hard})

    def set_result(self, run_id: int, result: Any) -> None:
        """Set the (JSON-serialisable) result of a run."""
        run_id = _run_id(run_id)
        self._check_existing([run_id], "run_id")
        self._submit({"op": "set_result", "run_id": run_id, "result": json.loads(to_json(result, "result"))})

    def on_completion(self, args: Sequence[str] | str, cwd: str = ".", stdout: str | None = None,
                      stderr: str | None = None) -> None:
        """Command run once every run has finished (only the latest call is kept).

        Relative ``cwd``, ``stdout`` and ``stderr`` are taken from the current directory.
        Output goes to ``<setup_dir>/logs/on_completion.{out,err}`` unless redirected.
        """
        argv = _check_args("on_completion.args", args)
        if not argv:
            raise SpecError(f"on_completion.args: must name a program, got {args!r}")
        spec = {"args": argv, "cwd": _optional_path("on_completion.cwd", cwd)}
        if spec["cwd"] is None:
            raise SpecTypeError(f"on_completion.cwd: expected a directory path, got {cwd!r}")
        spec["stdout"] = _optional_path("on_completion.stdout", stdout)
        spec["stderr"] = _optional_path("on_completion.stderr", stderr)
        self._submit({"op": "on_completion", "spec": spec})

    # -- execution -----------------------------------------------------------------
    def execute_local(self, blocking: bool = False, timeout: float | None = None, parallelism: int | None = None,
                      allow_multiple: bool = False, max_concurrency: int | None = None, *,
                      cores: int | None = None, gpus: int | None = None, kill_grace: float = 3.0,
                      log_layout: str = "split") -> int | None:
        """Execute the ensemble on this machine.

        Args:
            blocking: wait until the manager exits; otherwise it runs detached
                (pid in ``<setup_dir>/manager.pid``, log in ``<setup_dir>/logs/``).
            timeout: minutes to run; then running steps are killed and recorded
                as interrupted (their runs stay queued).
            parallelism: processes calling the application interface's hooks (default 1).
            allow_multiple: let several managers share the work (each run still runs once).
            max_concurrency: most runs in flight at once (default: as many as resources allow).
            cores, gpus: resources to pack runs onto (default: detected on this machine).
            kill_grace: seconds between SIGTERM and SIGKILL when a step is killed.
            log_layout: ``"split"`` (``ensemble.step<k>.attempt<n>.out`` and ``.err``) or
                ``"combined"`` (one ``.log`` holding both streams: one file less per attempt).

        Returns:
            the detached manager's pid, or None when blocking.

        Raises:
            EnsembleBusy: another manager executes the ensemble (and multiple are not allowed).
        """
        from ensemble import execution

        return execution.execute_local(self.setup_dir, self.store, blocking=blocking, timeout=timeout,
                                parallelism=parallelism, allow_multiple=allow_multiple,
                                max_concurrency=max_concurrency, cores=cores, gpus=gpus, kill_grace=kill_grace,
                                log_layout=log_layout)

    # -- summaries -----------------------------------------------------------------
    def as_dataframe(self, include_none: bool = True):
        """A pandas DataFrame indexed by run id: sample labels, result keys, status, restarts, timing.

        Args:
            include_none: keep runs that have no result.
        """
        from ensemble import summaries

        return summaries.dataframe(self.store, include_none)

    def write_csv(self, stream: IO[str]) -> None:
        """Write one CSV row per run (the columns of :meth:`as_dataframe`)."""
        from ensemble import summaries

        summaries.write_csv(self.store, stream)

    def write_json(self, stream: IO[str]) -> None:
        """Write a JSON list with one object per run."""
        from ensemble import summaries

        summaries.write_json(self.store, stream)

    def write_yaml(self, stream: IO[str]) -> None:
        """Write a YAML list with one mapping per run."""
        from ensemble import summaries

        summaries.write_yaml(self.store, stream)

    # -- preparation and hooks -----------------------------------------------------
    def _interface(self):
        return load_interface(self.config.app_interface) if self.config.app_interface else None

    def dry_run(self, *run_ids: int, verbosity: int = 0) -> list[int]:
        """Prepare run directories (copies, symlinks, parsed files, batch scripts) and call ``prep_run``.

        Serial and launch-free, so safe on a login node.  Returns the run ids prepared.
        """
        ids = _run_ids(run_ids) or self.filter_by_status()
        self._check_existing(ids)
        if not isinstance(verbosity, int):
            raise SpecTypeError(f"verbosity: expected an integer, got {verbosity!r}")
        preparer, interface = RunDirPreparer(self.config), self._interface()
        for run in self.store.runs(ids):
            preparer.prepare(run["id"], run["run_dir"], run["sample"])
            for step in run["steps"]:
                if step["batch_script"]:
                    cwd = step_cwd(run["run_dir"], step["cwd"])
                    preparer.render_script(step["args"][0], cwd, run["id"], run["run_dir"], run["sample"], "")
            call_hook(interface, "prep_run", setup_dir=str(self.setup_dir), run_id=run["id"],
                      run_dir=run["run_dir"], sample=run["sample"])
            if verbosity > 0:
                print(f"dry run {run['id']}: prepared {run['run_dir']}")
        return ids

    def call_prep_ensemble(self) -> Any:
        """Call the interface's ``prep_ensemble`` (if defined); return its value."""
        return call_hook(self._interface(), "prep_ensemble", setup_dir=str(self.setup_dir), cwd=self.config.root_dir)

    def call_post_ensemble(self) -> Any:
        """Call the interface's ``post_ensemble`` (if defined); return its value."""
        return call_hook(self._interface(), "post_ensemble", setup_dir=str(self.setup_dir), cwd=self.config.root_dir)

    def call_post_run(self, run_id: int) -> Any:
        """Call ``post_run`` for one run in its directory; return its value (None if undefined)."""
        run_id = _run_id(run_id)
        self._check_existing([run_id], "run_id")
        run = self.store.runs([run_id])[0]
        Path(run["run_dir"]).mkdir(parents=True, exist_ok=True)
        return call_hook(self._interface(), "post_run", setup_dir=str(self.setup_dir), run_id=run["id"],
                         run_dir=run["run_dir"], sample=run["sample"])


def _refuse_while_running(setup: Path, action: str) -> None:
    store = Store.open(setup)
    try:
        live = live_leases(store)
    finally:
        store.close()
    if live:
        raise EnsembleError(f"setup_dir: cannot {action} {str(setup)!r} while manager pid {live[0]['pid']} "
                            f"on {live[0]['host']} executes it")


def _write_setup(directory: Path, config: EnsembleConfig, rows: list[tuple[str, str, str]]) -> None:
    """Fill a new setup directory: database with the runs, config copy, logs/ and inbox/."""
    store = Store.create(directory, {"config": config.to_dict(), "created": time.time()})
    try:
        with store.transaction():
            store.insert_runs(1, rows)
            store.add_events([(None, "created", {"runs": len(rows)})])
    finally:
        store.close()
    (directory / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    (directory / LOG_DIR).mkdir()
    (directory / INBOX_DIR).mkdir()


def _install(tmp: Path, setup: Path) -> None:
    """Move a finished setup directory into place; an existing one is swapped out, then removed."""
    if not Ensemble.exists(setup):
        if setup.is_dir():
            setup.rmdir()
        os.rename(tmp, setup)
        return
    old = setup.parent / f".{setup.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(setup, old)
    try:
        os.rename(tmp, setup)
    except BaseException:
        os.rename(old, setup)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _split_create_args(args: tuple, kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Bind arguments as :meth:`Ensemble.create` takes them; return (options, setup_dir)."""
    import inspect

    try:
        bound = inspect.signature(Ensemble.create).bind(*args, **kwargs)
    except TypeError as exc:
        raise SpecTypeError(f"create: {exc}") from None
    bound.apply_defaults()
    options = dict(bound.arguments)
    return options, options.pop("setup_dir")

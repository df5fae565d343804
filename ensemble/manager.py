"""The :class:`Ensemble` manager: create, open, query and control an ensemble."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ensemble.errors import SpecError, SpecTypeError
from ensemble.prep.preparation import Preparation
from ensemble.results.reports import Reports
from ensemble.setup import setupdir
from ensemble.setup.control import add_runs
from ensemble.setup.handle import EnsembleHandle
from ensemble.setup.intake import new_samples
from ensemble.setup.setupdir import DEFAULT_SETUP_DIR, setup_path
from ensemble.spec import _check_args, to_json
from ensemble.spec.arguments import format_ids, optional_path, run_id_arg, run_ids_arg, split_create_args
from ensemble.spec.config import DEFAULT_RESULT_FILE
from ensemble.status import COMPLETED, RUN_ABORTED, RUN_FAILURE, RUN_KILLED, RUN_QUEUED, RUN_SUCCESS, RunStatus


class Ensemble(EnsembleHandle, Reports, Preparation):
    """Handle to an ensemble stored in a setup directory.

    ``Ensemble(setup_dir)`` opens an existing ensemble; use :meth:`create`
    (or :meth:`create_overwrite`, :meth:`create_resume`) to make one.
    """

    RUN_QUEUED = RUN_QUEUED
    RUN_SUCCESS = RUN_SUCCESS
    RUN_FAILURE = RUN_FAILURE
    RUN_ABORTED = RUN_ABORTED
    RUN_KILLED = RUN_KILLED

    def __repr__(self) -> str:
        return f"Ensemble({str(self.setup_dir)!r})"

    # -- creating ----------------------------------------------------------------
    @classmethod
    def create(cls, application: str | None = None, runs: Iterable[Any] | None = None, run_parse: Any = None,
               run_copy: Any = None, run_symlink: Any = None, run_dir_names: str | None = None,
               app_interface: str | None = None, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR,
               max_restarts: int | None = 0, max_failed_runs: int | None = None, app_is_batch_script: bool = True,
               use_flux: bool | str = False, abort_on: Sequence[int] | None = None, *,
               template_engine: str = "tokens", strict_templates: bool = True,
               result_file: str | None = DEFAULT_RESULT_FILE,
               progress: Callable[[int], None] | None = None) -> "Ensemble":
        """Create a new ensemble and return a handle to it.

        Everything is validated before the setup directory appears: it is built
        under a temporary name (the runs validated and inserted a batch at a time)
        and renamed, so bad input, a failure or Ctrl-C leaves no setup directory.

        Args:
            application: program run by :class:`~ensemble.Run` objects.
            runs: iterable of :class:`~ensemble.Run` / :class:`~ensemble.CompositeRun`;
                run ids are 1, 2, ... in this order.
            run_parse: path(s) or glob(s) of text files rendered into each run directory.
            run_copy: path(s) or glob(s) copied into each run directory.
            run_symlink: path(s) or glob(s) symlinked into each run directory.
            run_dir_names: format string over sample labels and ``run_id``;
                default ``runs/{run_id}`` relative to the current directory.
            app_interface: path to a Python module with hooks (see :mod:`ensemble.prep.hooks`).
            setup_dir: where the ensemble's database and logs live.
            max_restarts: restarts per failed run (None: unlimited).
            max_failed_runs: stop the ensemble once more runs than this failed (None: no limit).
            app_is_batch_script: whether ``application`` is a script to parse.
            use_flux: steps as jobs of a Flux instance (True, or the path of the flux command).
            abort_on: exit codes that mark a run aborted, with no restart.
            template_engine: ``"tokens"`` (``%%name%%``) or ``"jinja"`` (opt-in Jinja2).
            strict_templates: unknown tokens are errors (False leaves them as they are).
            result_file: JSON file in the run directory that becomes the run's result when its
                last step succeeds (None: none is read; see :mod:`ensemble.spec.resultfile`).
            progress: called with 1 as each run has been checked (the CLI's progress bar).

        Raises:
            EnsembleExists: if an ensemble exists in ``setup_dir`` (a ``ValueError``).
            ValueError, TypeError: for invalid arguments, naming field and value.
        """
        return cls._create(dict(application=application, runs=runs, run_parse=run_parse, run_copy=run_copy,
                                run_symlink=run_symlink, run_dir_names=run_dir_names, app_interface=app_interface,
                                max_restarts=max_restarts, max_failed_runs=max_failed_runs,
                                app_is_batch_script=app_is_batch_script, use_flux=use_flux, abort_on=abort_on,
                                template_engine=template_engine, strict_templates=strict_templates,
                                result_file=result_file, progress=progress),
                           setup_dir, overwrite=False)

    @classmethod
    def create_overwrite(cls, *args: Any, **kwargs: Any) -> "Ensemble":
        """Like :meth:`create`, replacing an existing ensemble (only once the new one is valid)."""
        return cls._create(*split_create_args(Ensemble.create, args, kwargs), overwrite=True)

    @classmethod
    def create_resume(cls, *args: Any, **kwargs: Any) -> "Ensemble":
        """Open the ensemble in ``setup_dir`` if there is one and add the ``runs`` whose samples it
        does not have yet (so re-running a driver script is idempotent); else create it like :meth:`create`."""
        options, setup_dir = split_create_args(Ensemble.create, args, kwargs)
        if cls.exists(setup_dir):
            ensemble = cls(setup_dir)
            ensemble.add_runs(options["runs"] or [], skip_existing=True)
            return ensemble
        return cls._create(options, setup_dir, overwrite=False)

    @classmethod
    def _create(cls, options: dict[str, Any], setup_dir: str | os.PathLike, overwrite: bool) -> "Ensemble":
        return cls(setupdir.build(options, setup_path(setup_dir), overwrite))

    @classmethod
    def exists(cls, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR) -> bool:
        """Whether an ensemble's setup exists in ``setup_dir``."""
        return setupdir.exists(setup_path(setup_dir))

    @classmethod
    def clear(cls, setup_dir: str | os.PathLike = DEFAULT_SETUP_DIR) -> None:
        """Remove the setup directory (database, logs, inbox); run directories are kept.

        Raises EnsembleError while a manager is executing the ensemble.
        """
        setupdir.clear(setup_path(setup_dir))

    # -- status ------------------------------------------------------------------
    def filter_by_status(self, *statuses: RunStatus | int | str) -> list[int]:
        """Run ids with any of the given statuses (all runs if none given), ascending."""
        return self.store.run_ids_with_status([RunStatus.parse(s) for s in statuses])

    def count_by_status(self, *statuses: RunStatus | int | str) -> int:
        """Number of runs with any of the given statuses (all runs if none given)."""
        return self.store.count_with_status(sorted({RunStatus.parse(s) for s in statuses}))

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
        return self.store.runs(None if run_ids is None else run_ids_arg(run_ids))

    def attempts(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded attempts (start, end, host, exit code, signal, outcome, command)."""
        return self.store.attempts(run_id)

    def events(self, run_id: int | None = None) -> list[dict[str, Any]]:
        """Recorded state changes, oldest first."""
        return self.store.events(run_id)

    # -- changing runs -------------------------------------------------------------
    def check_run_ids(self, run_ids: Iterable[int]) -> list[int]:
        """The ids as a list; raise SpecError naming the ids that are not runs of this ensemble."""
        ids = run_ids_arg(run_ids)
        self._check_existing(ids)
        return ids

    def _check_existing(self, ids: list[int], what: str = "run_ids") -> None:
        missing = sorted(set(ids) - self.store.existing_run_ids(ids))
        if missing:
            runs = "run" if len(missing) == 1 else "runs"
            raise SpecError(f"{what}: no {runs} {format_ids(missing)} in this ensemble "
                            f"(ids are 1..{self.store.next_run_id() - 1})")

    def add_runs(self, runs: Iterable[Any], skip_existing: bool = False,
                 progress: Callable[[int], None] | None = None) -> int:
        """Add runs (validated and inserted in batches, in one transaction: an error adds none); a
        running manager picks them up within a second.  ``skip_existing``: leave out runs whose
        sample is already in the ensemble (or earlier in ``runs``); ``progress(1)`` is called as
        each run has been checked.  Returns how many were added."""
        runs = new_samples(runs, self.store) if skip_existing else runs
        added = [0]

        def checked(count: int) -> None:
            added[0] += count
            if progress is not None:
                progress(count)

        add_runs(self.setup_dir, self.store, self.config, runs, checked)
        return added[0]

    def dequeue_runs(self, run_ids: Iterable[int]) -> None:
        """Mark queued runs killed; a running manager also kills those in flight.

        Completed runs are left as they are.
        """
        ids = run_ids_arg(run_ids)
        self._check_existing(ids)
        self.submit_command({"op": "dequeue", "run_ids": ids})

    def requeue_runs(self, run_ids: Iterable[int], hard: bool = False) -> None:
        """Queue completed runs again; ``hard`` restarts them from step 0 with no restarts used.

        Runs still queued are left as they are.
        """
        ids = run_ids_arg(run_ids)
        if not isinstance(hard, bool):
            raise SpecTypeError(f"hard: expected True or False, got {hard!r}")
        self._check_existing(ids)
        self.submit_command({"op": "requeue", "run_ids": ids, "hard": hard})

    def set_result(self, run_id: int, result: Any) -> None:
        """Set the (JSON-serialisable) result of a run."""
        run_id = run_id_arg(run_id)
        self._check_existing([run_id], "run_id")
        self.submit_command({"op": "set_result", "run_id": run_id, "result": json.loads(to_json(result, "result"))})

    def on_completion(self, args: Sequence[str] | str, cwd: str = ".", stdout: str | None = None,
                      stderr: str | None = None) -> None:
        """Command run once every run has finished (only the latest call is kept).

        Relative ``cwd``, ``stdout`` and ``stderr`` are taken from the current directory.
        Output goes to ``<setup_dir>/logs/on_completion.{out,err}`` unless redirected.
        """
        argv = _check_args("on_completion.args", args)
        if not argv:
            raise SpecError(f"on_completion.args: must name a program, got {args!r}")
        spec = {"args": argv, "cwd": optional_path("on_completion.cwd", cwd)}
        if spec["cwd"] is None:
            raise SpecTypeError(f"on_completion.cwd: expected a directory path, got {cwd!r}")
        spec["stdout"] = optional_path("on_completion.stdout", stdout)
        spec["stderr"] = optional_path("on_completion.stderr", stderr)
        self.submit_command({"op": "on_completion", "spec": spec})

    # -- execution -----------------------------------------------------------------
    def execute_local(self, blocking: bool = False, timeout: float | None = None, parallelism: int | None = None,
                      allow_multiple: bool = False, max_concurrency: int | None = None, *,
                      cores: int | None = None, gpus: int | None = None, kill_grace: float = 3.0,
                      log_layout: str = "split", launcher: str = "auto", mpi: str | None = None,
                      early_stop: float | None = None) -> int | None:
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
            launcher: how steps start: ``"auto"`` (inside a Slurm job ``srun``, or ``"worker"``
                from 200 queued runs; else local processes), ``"local"``, ``"srun"``,
                ``"mpirun"`` or ``"worker"`` (see :doc:`hpc`).
            mpi: the ``srun --mpi=`` plugin for steps (``"pmix"``, ``"pmi2"``; default:
                ``$ENSEMBLE_MPI``, else Slurm's ``MpiDefault``).
            early_stop: minutes before the allocation's end (or ``timeout``) after which no new
                run starts; running ones go on until the end.  None or 0: no early stop.

        Returns:
            the detached manager's pid, or None when blocking.

        Raises:
            EnsembleBusy: another manager executes the ensemble (and multiple are not allowed).
        """
        from ensemble.alloc import execution

        return execution.execute_local(self.setup_dir, self.store, blocking=blocking, timeout=timeout,
                                parallelism=parallelism, allow_multiple=allow_multiple,
                                max_concurrency=max_concurrency, cores=cores, gpus=gpus, kill_grace=kill_grace,
                                log_layout=log_layout, launcher=launcher, mpi=mpi, early_stop=early_stop)

    def execute_alloc(self, nodes: int = 1, partition: str | None = None, bank: str | None = None,
                      name: str = "ensemble", timeout: int | None = None, repeats: int = 0,
                      parallelism: int | None = None, early_stop: float | None = None, allow_multiple: bool = False,
                      max_concurrency: int | None = None, *, launcher: str = "auto", mpi: str | None = None,
                      kill_grace: float = 3.0, log_layout: str = "split", max_allocations: int | None = None) -> str:
        """Request a Slurm allocation that executes the ensemble; return its job id.

        Checks every argument, then writes ``<setup_dir>/batch/ensemble-<n>.sbatch`` (editable)
        and submits it; the job runs ``ensemble execute --block`` (output in
        ``<setup_dir>/logs/slurm-<job id>.out``; see :doc:`hpc`).

        Args:
            nodes: whole nodes to allocate (``--nodes``, with ``--exclusive``).
            partition: the Slurm partition (``--partition``; default: Slurm's).
            bank: the account to charge (``--account``).
            name: the job name (``--job-name``).
            timeout: the allocation's time limit in minutes (``--time``; default: the partition's).
            repeats: follow-up allocations to queue, one at a time, while runs are left when an
                allocation ends; the one still queued is cancelled when the ensemble completes.
            parallelism, early_stop, allow_multiple, max_concurrency: as for :meth:`execute_local`.
            launcher, mpi, kill_grace, log_layout: as for :meth:`execute_local`; the launcher is
                checked by name here and decided inside the job (``auto``: ``srun`` or ``worker``).
            max_allocations: keep up to this many such allocations queued or running while work
                waits (automatic allocations, Slurm or Flux; see :doc:`scaling`); returns the
                first job's id.

        Raises:
            ValueError, TypeError: for invalid arguments, naming field and value.
            EnsembleError: ``sbatch`` is missing or rejected the job.
        """
        from ensemble.alloc.autoalloc import submit_pool
        from ensemble.alloc.chain import check_request, submit_alloc

        request = check_request(nodes, partition, bank, name, timeout, repeats, parallelism, early_stop,
                                allow_multiple, max_concurrency, launcher, mpi, kill_grace, log_layout, max_allocations)
        return submit_pool(self, request) if request.max_allocations else submit_alloc(self, request)

    def execute_array(self, runs_per_task: int = 1, max_running: int | None = None, nodes: int = 1,
                      partition: str | None = None, bank: str | None = None, name: str = "ensemble",
                      timeout: int | None = None, **manager: Any) -> str:
        """Submit the queued runs as a Slurm job array, ``runs_per_task`` runs per task, at most
        ``max_running`` tasks at once (``sbatch --array=1-N%M``); return the array's job id.

        Each task executes its chunk of runs with the same engine into this store (see
        :doc:`scaling`); ``nodes``, ``partition``, ``bank``, ``name`` and ``timeout`` are per
        task, ``manager`` takes the manager options of :meth:`execute_alloc`.

        Raises:
            ValueError, TypeError: invalid arguments, no queued run, more tasks than the cluster's
                ``MaxArraySize``; nothing is written or submitted.
        """
        from ensemble.alloc.arrays import check_array, submit_array
        from ensemble.alloc.chain import check_request

        array = check_array(runs_per_task, max_running)
        request = check_request(nodes, partition, bank, name, timeout, **{**manager, "allow_multiple": True})
        return submit_array(self, request, array)

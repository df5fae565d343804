"""A manager's life: open, take the lease, start, stop, interrupt, shut down; the inbox.

Signal handlers are installed before anything else, so a SIGTERM at any moment
ends in a clean shutdown (exit 128+N).  A lost lease ends the manager without
another write (:data:`EXIT_LEASE_LOST`); a full file system stops launching and
records what it can (:data:`EXIT_DISK_FULL`).
"""
from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ensemble.engine.adoption import Adoption
from ensemble.engine.drain import Drain, EngineOptions
from ensemble.engine.ledger import Ledger
from ensemble.engine.prefetch import UNDECIDED, Prefetcher
from ensemble.engine.reactor import Reactor
from ensemble.engine.recorder import DiskFull, LeaseLost, Recorder
from ensemble.engine.runqueue import RunQueue
from ensemble.engine.runstate import EngineState, Outcome, RunState
from ensemble.engine.steering import Steering
from ensemble.executors import Executor, SpawnerExecutor
from ensemble.executors.local import ENV_LAUNCH
from ensemble.executors.procs import kill_tagged
from ensemble.launchers import Launcher
from ensemble.prep.hooks import ENV_MANAGER, installation_env
from ensemble.prep.rundir import RunDirPreparer
from ensemble.providers import Provider
from ensemble.providers.resources import Pool
from ensemble.setup import control
from ensemble.spec import Step
from ensemble.spec.config import EnsembleConfig
from ensemble.status import RunStatus
from ensemble.store import Store
from ensemble.store.lease import HOST, acquire

#: Exit status of a manager whose file system is full (sysexits EX_IOERR).
EXIT_DISK_FULL = 74
#: Exit status of a manager whose lease another manager took over (sysexits EX_TEMPFAIL).
EXIT_LEASE_LOST = 75
#: Exit status when every run completed but some failed or were aborted.
EXIT_RUNS_FAILED = 3
#: Exit status when ``max_failed_runs`` stopped the ensemble.
EXIT_MAX_FAILED = 4
#: Exit status when the manager stopped (time or allocation up, stop requested) with runs still queued.
EXIT_WORK_LEFT = 5
#: Seconds before the allocation's end at which running steps are interrupted, on top of the kill
#: grace: Slurm's own SIGTERM at the end must find nothing left to record.
ALLOC_END_MARGIN = 10.0
log = logging.getLogger("ensemble.engine")


class Lifecycle(Adoption, Steering, Ledger, Drain):
    """State and life of one manager; :class:`~ensemble.engine.core.Engine` adds the loop."""

    def __init__(self, setup_dir: Path, provider: Provider, launcher: Launcher, options: EngineOptions,
                 executor: Callable[[], Executor] = SpawnerExecutor,
                 on_ready: Callable[[str], None] | None = None,
                 early_signal: Callable[[], int | None] | None = None) -> None:
        self.setup_dir = Path(setup_dir)
        self.provider, self.launcher, self.options = provider, launcher, options
        self.make_executor, self.on_ready, self.early_signal = executor, on_ready, early_signal
        self.runs: dict[int, RunState] = {}
        self.stepsets: dict[int, list[Step]] = {}
        #: Runs of started attempts whose ends arrive over a channel (:meth:`Executor.channels`).
        self.channel_runs: dict[Any, RunState] = {}
        #: Runs (of a shared ensemble) that can never fit here: left for a larger manager.
        self.too_large: set[int] = set()
        self.to_start: list[tuple[RunState, Any]] = []
        #: Running steps that may get a chained successor (:mod:`ensemble.engine.chain`).
        self.tips: set[RunState] = set()
        #: Chained runs not started yet (and not being cancelled).
        self.chained: set[RunState] = set()
        #: Chained runs being taken back to start on a free placement (their cancel is on its way).
        self.taking_back: set[RunState] = set()
        #: Moving average of how long attempts took (seconds), None before the first end.
        self.recent_step_s: float | None = None
        self.deferred: list[Callable[[], object]] = []
        self.inflight = self.failed = self.generation = 0
        self.stop_reason: str | None = None
        self.state = EngineState.RUNNING
        self.post_ensemble_done = False
        self.hooks = None
        self.hook_names: frozenset[str] = frozenset()
        self.deadline: float | None = None
        self.deadline_reason = "timeout"
        self.launch_until: float | None = None
        #: Runs whose next step's timeout does not fit before the deadline: left for the next allocation.
        self.later: set[int] = set()
        self.max_failed_stop = False
        self.next_poll = self.next_heartbeat = 0.0
        self.pids_due: float | None = None
        self.prefetch: Any = UNDECIDED

    # -- start ------------------------------------------------------------------------------------
    def run(self) -> int:
        """Execute; return 0 when done or stopped, 128+N after signal N, or an EXIT_* code."""
        self.reactor = Reactor()
        self.reactor.install_signals()
        if self.early_signal is not None and self.reactor.signal_received is None:
            self.reactor.signal_received = self.early_signal()
        self.store: Store | None = None
        self.executor: Executor | None = None
        try:
            self._open()
            self._acquire()
        except BaseException:
            self._close()
            raise
        error: Exception | None = None
        try:
            self._start()
            self.loop()
            if self.state.launching:
                self.finish()
        except (LeaseLost, DiskFull) as exc:
            error = exc
        except BaseException:
            self._kill_all(record=True)
            self._shutdown_quietly()
            self._close()
            raise
        return self._end(error)

    def _open(self) -> None:
        self.store = Store.open(self.setup_dir)
        self.config = EnsembleConfig.from_dict(self.store.get_meta("config"))
        self.pool = Pool(self.provider.nodes())
        self._set_deadlines(self.provider.end_time())
        self.queue = RunQueue(self.pool)
        self.preparer = RunDirPreparer(self.config)
        drop = tuple(getattr(self.launcher, "drop_env_prefixes", ()))
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith(drop)} if drop else dict(os.environ)
        self.executor = self.make_executor()

    def _set_deadlines(self, alloc_end: float | None) -> None:
        """When running steps are interrupted (``timeout``, or the allocation's end less a margin)
        and when launching stops (``early_stop`` minutes before that)."""
        now = time.monotonic()
        if self.options.timeout is not None:
            self.deadline = now + self.options.timeout * 60
        if alloc_end is not None:
            end = now + alloc_end - time.time() - ALLOC_END_MARGIN - self.options.kill_grace
            if self.deadline is None or end < self.deadline:
                self.deadline, self.deadline_reason = end, "allocation ending"
        if self.deadline is not None and self.options.early_stop:
            self.launch_until = self.deadline - self.options.early_stop * 60

    def _acquire(self) -> None:
        self.await_keepers()
        self.started = time.time()
        with self.store.transaction():
            self.lease, dead = acquire(self.store, self.options.allow_multiple)
            self.leftovers, killed = self.survey_leftovers()
            spare = [f"{ENV_LAUNCH}={h.tag}".encode() + b"\0" for _, h in self.leftovers.adopted]
            killed += kill_tagged([d["manager"] for d in dead if d["host"] == HOST], spare)
            killed += self.executor.kill_leftovers([d["manager"] for d in dead])
            attempts, runs = self.store.recover_orphans(self.started)
            self.store.add_events([(None, "manager_started", {
                "manager": self.lease.manager, "cores": self.pool.total_cores, "gpus": self.pool.total_gpus,
                "gpu_ids": [g for n in self.pool.nodes for g in n.gpus], "recovered_attempts": attempts,
                "recovered_runs": runs, "killed_leftovers": killed,
                "adopted_running": sum(h.pidfd is not None for _, h in self.leftovers.adopted),
                "adopted_ended": sum(h.pidfd is None for _, h in self.leftovers.adopted),
                "nodes": [n.name for n in self.pool.nodes],
                **self.provider.describe(), **self.executor.describe()})])
        self.recorder = Recorder(self.store, self.lease.manager, on_commit=self.executor.committed)
        log.info("manager %s started on %s: %d cores, %d gpus %s; %s; recovered %d interrupted attempts, "
                 "killed %d leftovers", self.lease.manager, HOST, self.pool.total_cores, self.pool.total_gpus,
                 [g for n in self.pool.nodes for g in n.gpus], self.executor.describe(), attempts, killed)
        if self.on_ready is not None:
            self.on_ready(self.lease.manager)

    def _start(self) -> None:
        self.base_env.update(installation_env(), **{ENV_MANAGER: self.lease.manager})
        self.executor.set_base_env(self.base_env)
        self.watch_channels()
        if self.executor.channels() or self.pool.disabled:  # started helpers of its own (workers)
            self.recorder.batch.event(None, "executor_started", self.executor.describe())
        self.setup_str = str(self.setup_dir)
        self.inbox_watch = control.InboxWatch(self.setup_dir)
        applied = self._ingest()
        self.generation = self.store.generation()
        self.failed = self.store.count_failed()
        # Stopped before it began, a manager takes nothing over: the next one finds the same leftovers.
        if applied.stop:
            self.stop("stop requested")
            return
        if self.reactor.signal_received:
            self.interrupt("signal")
            return
        if self.launch_until is not None and self.launch_until <= time.monotonic():
            self._early_stop()
            return
        if self.launch_until is not None:
            self.reactor.call_later(self.launch_until - time.monotonic(), self._early_stop)
        self.start_hooks()
        self.take_over(self.leftovers)

    def _early_stop(self) -> None:
        if self.state.launching:
            self.stop(f"{self.deadline_reason} in {self.options.early_stop:g} minutes (early_stop)")

    # -- the end ---------------------------------------------------------------------------------------
    def _kill_all(self, record: bool) -> None:
        for run in list(self.runs.values()):
            if run.handle is None:
                continue
            self.executor.signal(run.handle, signal.SIGKILL)
            code = self.executor.reap(run.handle)
            self.executor.sweep(run.handle)
            never_started = self.executor.never_started(run.handle)
            run.handle = None
            if record and never_started:
                self.recorder.batch.drop_attempt(run.attempt_id)
            elif record:
                self.end_attempt(run, code, Outcome.INTERRUPTED)
        self.executor.settle()
        if self.hooks is not None:
            self.hooks.kill_busy()
            self.hooks.stop()
            self.hooks = None
        kill_tagged([self.lease.manager])

    def _shutdown(self) -> None:
        """Release every claim, record the stop, drop the lease, apply what is left in the inbox."""
        for run in list(self.runs.values()):
            if run.claimed:
                self.recorder.batch.unclaim(run.id, run.step, run.restarts)
        self.recorder.batch.event(None, "manager_stopped", {"manager": self.lease.manager, "reason": self.stop_reason})
        self.recorder.flush()
        with self.recorder.guard(), self.store.transaction():
            self.store.drop_lease(self.lease.manager)
        with self.recorder.guard():
            control.ingest(self.store, self.config, self.setup_dir)

    def _drop_lease_quietly(self) -> None:
        """On a full disk, give the lease up first: a one-row delete may fit where the rest does not,
        and the next manager recovers this one's claims and open attempts from a dropped lease."""
        try:
            with self.store.transaction():
                self.store.drop_lease(self.lease.manager)
        except Exception as exc:  # noqa: BLE001 - a lease left behind is judged dead by its pid
            log.debug("could not drop the lease: %r", exc)

    def _shutdown_quietly(self) -> bool:
        """Shut down recording what can be recorded; False if some of it could not be (the next
        manager recovers what is missing: open attempts, claims, the lease)."""
        try:
            self._shutdown()
        except Exception as exc:  # noqa: BLE001 - the next manager recovers whatever is not recorded
            log.debug("shutdown could not record everything: %r", exc)
            return False
        return True

    def _end(self, error: Exception | None) -> int:
        self._kill_all(record=not isinstance(error, LeaseLost))
        code = 0
        if error is None:
            try:
                self._shutdown()
                code = self._result_code()
            except (LeaseLost, DiskFull) as exc:
                error = exc
        recorded = True
        if isinstance(error, DiskFull):
            self._drop_lease_quietly()
            recorded = self._shutdown_quietly()
        self._close()
        if isinstance(error, LeaseLost):
            log.error("%s: killed its steps and exits without writing (exit %d)", error, EXIT_LEASE_LOST)
            return EXIT_LEASE_LOST
        if isinstance(error, DiskFull):
            left = "" if recorded else "; the next manager recovers what could not be recorded"
            log.error("%s: stopped launching, killed running steps%s (exit %d)", error, left, EXIT_DISK_FULL)
            return EXIT_DISK_FULL
        log.info("manager %s stopped (%s)", self.lease.manager, self.stop_reason or "drained")
        sig = self.reactor.signal_received
        return 128 + sig if sig else code

    def _result_code(self) -> int:
        """0, or what is wrong: work left, max_failed_runs, runs failed (see the EXIT_* constants)."""
        if self.later:
            log.warning("%d runs left for a later allocation: their next step's timeout does not fit "
                        "before the %s", len(self.later), self.deadline_reason)
        if self.max_failed_stop:
            return EXIT_MAX_FAILED
        counts = self.store.counts_by_status(self.options.run_range)
        if counts[RunStatus.QUEUED]:
            return EXIT_WORK_LEFT
        return EXIT_RUNS_FAILED if counts[RunStatus.FAILURE] or counts[RunStatus.ABORTED] else 0

    def _close(self) -> None:
        if isinstance(self.prefetch, Prefetcher):
            self.prefetch.close()
        if self.executor is not None:
            self.executor.close()
        self.reactor.close()
        if self.store is not None:
            self.store.close()

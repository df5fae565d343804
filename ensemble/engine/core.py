"""The engine's loop: claims runs, starts their steps, applies what their ends mean.

One turn: start what fits (attempts committed before their processes start),
wait in the reactor, handle step exits before hook replies before signals,
fire timers, then flush and read the inbox.  The loop sees the machine only
through a Pool (from a Provider), builds command lines only through a Launcher
and starts processes only through an Executor.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable

from ensemble.engine.chain import Chains
from ensemble.engine.exits import Exits
from ensemble.engine.lifecycle import Lifecycle
from ensemble.engine.prefetch import Prefetcher
from ensemble.engine.reactor import Source
from ensemble.engine.recorder import DiskFull, PendingStart
from ensemble.engine.runstate import EngineState, Outcome, Phase, RunState
from ensemble.executors import Launch
from ensemble.executors.adopted import attempt_tag
from ensemble.prep.hooks import run_env
from ensemble.prep.rundir import step_cwd
from ensemble.providers.resources import Placement
from ensemble.spec.resultfile import ResultFileError, read_result_file
from ensemble.status import RunStatus
from ensemble.store import is_disk_full

#: Runs whose directories and log files are made ahead when the file system is slow.
PREFETCH_DEPTH = 32
#: Pids of started steps ride with the next flush, but wait no longer than this.
PID_FLUSH_DELAY = 0.05
log = logging.getLogger("ensemble.engine")


class Engine(Chains, Exits, Lifecycle):
    """Executes one ensemble until it drains, is stopped, or its time is up."""

    # -- the loop ---------------------------------------------------------------------------------
    def loop(self) -> None:
        while True:
            if self.state.launching:
                self._launch()
            if not self.recorder.batch.only_pids():
                self._flush()
            elif self.recorder.batch and self.pids_due is None:
                self.pids_due = time.monotonic() + PID_FLUSH_DELAY
            self.run_deferred()
            if self.state is not EngineState.DRAINING and not self.inflight:
                if not self.state.launching:
                    return
                if self._queue_empty():
                    if not self.begin_drain():
                        return
                    continue
            self._turn()

    def _turn(self) -> None:
        wake = self.next_poll if self.pids_due is None else min(self.next_poll, self.pids_due)
        if self.deadline is not None and self.state is not EngineState.INTERRUPTING:
            wake = min(wake, self.deadline)
        more_starts = self.executor.next_start() if self.state.launching else None
        if more_starts is not None:
            wake = min(wake, more_starts)
        self.executor.flush()
        linger = self.linger_s()
        if linger:
            time.sleep(linger)
        events = self.reactor.wait(wake)
        for source, run, fd in events:
            if source is Source.STEP:
                self._on_exit(run)
            elif source is Source.CHANNEL:
                self.on_channel(fd)
            elif source is Source.HOOK:
                self.hooks.on_readable(fd)
            elif self.reactor.signal_received and self.state is not EngineState.INTERRUPTING:
                self.interrupt("signal")
        self.reactor.fire_timers()
        now = time.monotonic()
        if self.pids_due is not None and now >= self.pids_due:
            self._flush()
        if now >= self.next_poll or (events and self.inbox_watch.changed()):
            self.poll_inbox()
        self.run_deferred()
        if self.deadline is not None and now >= self.deadline and self.state is not EngineState.INTERRUPTING:
            self.interrupt(self.deadline_reason)

    def _flush(self) -> None:
        self.pids_due = None
        for run_id in self.recorder.flush():
            run = self.runs.get(run_id)
            if run is not None:
                log.warning("run %d was claimed elsewhere: left to its claimant", run_id)
                self._leave(run)

    def _leave(self, run: RunState) -> None:
        """Forget a run another manager claimed first (nothing of it was started here)."""
        self.queue.discard(run)
        if run.placement is not None and not run.pending:
            self.pool.release(run.placement)
            run.placement = None
        self.forget(run)

    # -- choosing and starting --------------------------------------------------------------------
    def _queue_empty(self) -> bool:
        self.refill()
        return self.queue.empty() and not self.to_start

    def _launch(self) -> None:
        self.refill()
        for run, placement in self.queue.pick(self.start_room(), self._cannot_start):
            if not run.claimed:
                self.recorder.claim(run.id)
                self.claimed(run)
                self.post_ensemble_done = False
            self._advance(run, placement)
        self.take_back_idle()
        chains = self.pick_chains()
        if not self.to_start and not chains:
            return
        starts = [self._build(run, placement) for run, placement in self.to_start]
        chained = [(self._build(run, tip.placement, chained=True), tip) for run, tip in chains]
        for run, _ in chains:
            run.pending = True  # its placement is the tip's: a lost claim must not give it back
        self.to_start.clear()
        self._flush()
        for run, launch, pending in starts:
            if self._started_here(run, launch, pending):
                self._spawn(run, launch, pending.attempt_id)
        for (run, launch, pending), tip in chained:
            if self._started_here(run, launch, pending):
                self.spawn_chained(run, launch, pending.attempt_id, tip)
        self.executor.flush()
        self.prefetch_ahead()

    def _started_here(self, run: RunState, launch: Launch | Exception, pending: PendingStart) -> bool:
        """Whether the run is still this manager's to start (its claim held): else its log files are closed."""
        if run.id in self.runs and pending.attempt_id is not None:
            return True
        if isinstance(launch, Launch) and launch.logs is not None:
            for fd in launch.logs:
                os.close(fd)
        return False

    def _cannot_start(self, run: RunState) -> bool:
        return self._never_fits(run) or self._too_late(run)

    def _too_late(self, run: RunState) -> bool:
        """Leave a run whose next step's timeout cannot end before the deadline to a later allocation."""
        if self.deadline is None or run.finished_steps or not run.current.timeout:
            return False
        if time.monotonic() + run.current.timeout * 60 <= self.deadline:
            return False
        self.later.add(run.id)
        self.release_claim(run) if run.claimed else self.runs.pop(run.id, None)
        return True

    def _never_fits(self, run: RunState) -> bool:
        """Fail (or, with several managers, leave) a run with a step larger than the allocation."""
        for k, step in enumerate(run.steps[run.step:], start=run.step):
            if self.pool.can_ever_fit(step.tasks, step.cores_per_task, step.gpus_per_task):
                continue
            if self.pool.can_ever_fit(step.tasks, step.cores_per_task, step.gpus_per_task, lost_too=True):
                # It fitted before a node was lost: the next allocation runs it.
                self.later.add(run.id)
                self.release_claim(run) if run.claimed else self.runs.pop(run.id, None)
                return True
            message = (f"step {k} needs {step.tasks} tasks x {step.cores_per_task} cores x {step.gpus_per_task} "
                       f"gpus; the allocation has {self.pool.total_cores} cores and {self.pool.total_gpus} gpus "
                       f"on {len(self.pool.nodes)} node(s): it can never fit")
            if self.options.allow_multiple:
                log.warning("run %d left queued for a larger manager: %s", run.id, message)
                self.too_large.add(run.id)
                self.release_claim(run) if run.claimed else self.runs.pop(run.id, None)
                return True
            if not run.claimed:
                self.recorder.claim(run.id)
                self.claimed(run)
            self.complete(run, RunStatus.FAILURE, message)
            return True
        return False

    def _advance(self, run: RunState, placement: Placement | None) -> None:
        """Move a run on: prepare it, then prep_run, its step, or post_run."""
        if run.finished_steps:
            self._post_run(run)
            return
        if run.step == 0 and not run.prepared:
            if not self.prepare_run(run, placement):
                return
            if "prep_run" in self.hook_names:
                run.placement = placement
                self._call_run_hook(run, Phase.PREP)
                return
        self.to_start.append((run, placement))

    def prepare_run(self, run: RunState, placement: Placement | None) -> bool:
        """Make the run's directory; on failure fail the run and give its placement back."""
        try:
            run.logs = self.prefetched(run)
            self.preparer.prepare(run.id, run.run_dir, run.sample, exists=run.logs is not None)
        except Exception as exc:  # noqa: BLE001 - any failure to prepare fails this run only
            self._raise_if_full(exc)
            if placement is not None:
                self.pool.release(placement)
            self.complete(run, RunStatus.FAILURE, f"preparing {run.run_dir} failed: {exc!r}")
            return False
        run.prepared = True
        return True

    def _build(self, run: RunState, placement: Placement, chained: bool = False
               ) -> tuple[RunState, Launch | Exception, PendingStart]:
        """Everything to start the run's step, or why it cannot start; either way the attempt is
        recorded at the next flush (one transaction for all the starts of a turn), ``chained``:
        as waiting behind another step."""
        step = run.current
        run.attempts += 1
        run.placement, run.phase, run.kill_reason = placement, Phase.STEP, None
        run.attempt_started = time.time()
        cwd = step_cwd(run.run_dir, step.cwd)
        argv = list(step.args)
        try:
            if step.cwd != ".":
                os.makedirs(cwd, exist_ok=True)
            if step.batch_script:
                prefix = " ".join(self.launcher.prefix(step, placement))
                argv[0] = self.preparer.render_script(argv[0], cwd, run.id, run.run_dir, run.sample, prefix)
            command = self.launcher.command(step, placement, argv, step.batch_script)
            env = {**self.launcher.env(step, placement),
                   **run_env(self.setup_str, run.id, run.run_dir, run.sample, run.sample_json),
                   "ENSEMBLE_STEP": str(run.step), "ENSEMBLE_ATTEMPT": str(run.attempts)}
        except Exception as exc:  # noqa: BLE001 - a launch error of any kind fails this run only
            self._raise_if_full(exc)
            return run, exc, self._record_start(run, argv, chained)
        base = self.log_base(run)
        logs, run.logs = run.logs or self.prefetched(run, started=True), None
        pending = self._record_start(run, command, chained)
        out, err = self.log_paths(base)
        launch = Launch(run.id, run.step, run.attempts, step, placement, command, cwd, env, out, err,
                        attempt_tag(self.lease.manager, run.id, run.attempts), logs)
        return run, launch, pending

    def _record_start(self, run: RunState, command: list[str], chained: bool) -> PendingStart:
        pending = PendingStart(run.id, run.step, run.attempts, run.attempt_started, command, run.placement,
                               chained)
        self.recorder.record_start(pending)
        return pending

    def _launch_failed(self, run: RunState, exc: BaseException, attempt_id: int) -> None:
        if run.placement is not None:
            self.pool.release(run.placement)
        run.placement = None
        run.attempt_id = attempt_id
        self._step_done(run, None, Outcome.LAUNCH_ERROR, f"step {run.step} could not start: {exc}")

    def _spawn(self, run: RunState, launch: Launch, attempt_id: int) -> None:
        run.attempt_id = attempt_id
        try:
            handle = self.executor.start(launch)
        except Exception as exc:  # noqa: BLE001 - a launch error of any kind fails this run only
            self._raise_if_full(exc)
            self._launch_failed(run, exc, attempt_id)
            return
        run.handle = handle
        if handle.pid is not None:
            self.recorder.batch.set_pid(attempt_id, handle.pid)
        fd = self.executor.fileno(handle)
        if fd is None:
            self.channel_runs[handle] = run
        else:
            self.reactor.watch(fd, Source.STEP, run)
        self.arm_timeout(run)
        if self.chainable_tip(run):
            self.tips.add(run)
        if run.kill_reason is not None:
            reason, run.kill_reason = run.kill_reason, None
            self.kill(run, reason)

    def arm_timeout(self, run: RunState) -> None:
        """Kill the step's attempt when its timeout is up (counted from now)."""
        timeout, attempt_id = run.current.timeout, run.attempt_id
        if timeout:
            run.timers.append(self.reactor.call_later(timeout * 60, lambda: self._on_timeout(run, attempt_id)))

    # -- files made ahead ---------------------------------------------------------------------------
    @staticmethod
    def log_base(run: RunState, attempt: int | None = None) -> str:
        return os.path.join(run.run_dir, f"ensemble.step{run.step}.attempt{attempt or run.attempts}")

    def prefetched(self, run: RunState, started: bool = False) -> tuple[int, int] | None:
        """Log files of the run's next attempt (``started``: of the attempt just counted), if made ahead."""
        if not isinstance(self.prefetch, Prefetcher):
            return None
        return self.prefetch.take((run.id, run.step, run.attempts if started else run.attempts + 1))

    def prefetch_ahead(self) -> None:
        """Start making the directories and log files of the next runs in line."""
        if not isinstance(self.prefetch, Prefetcher) or len(self.prefetch) >= PREFETCH_DEPTH:
            return
        for run in itertools.islice(self.queue.waiting, PREFETCH_DEPTH):
            out, err = self.log_paths(self.log_base(run, run.attempts + 1))
            self.prefetch.ahead((run.id, run.step, run.attempts + 1), run.run_dir, out, err)

    def log_paths(self, base: str) -> tuple[str, str]:
        """The attempt's stdout and stderr files (the same file in the combined layout)."""
        if self.options.log_layout == "combined":
            return base + ".log", base + ".log"
        return base + ".out", base + ".err"

    @staticmethod
    def _raise_if_full(exc: BaseException) -> None:
        if is_disk_full(exc):
            raise DiskFull(f"file system full: {exc}") from exc

    # -- hooks ------------------------------------------------------------------------------------
    def _post_run(self, run: RunState) -> None:
        """The last step succeeded: read the result file, then call ``post_run`` or complete."""
        try:
            run.result_json = read_result_file(run.run_dir, self.config.result_file)
        except ResultFileError as exc:
            self.complete(run, RunStatus.FAILURE, str(exc))
            return
        if "post_run" in self.hook_names:
            self.recorder.batch.progress(run.id, run.step, run.restarts)
            self._call_run_hook(run, Phase.POST)
        else:
            self.complete(run, RunStatus.SUCCESS, None, run.result_json)

    def _call_run_hook(self, run: RunState, phase: Phase) -> None:
        run.phase = phase
        log_path = os.path.join(run.run_dir, f"ensemble.{phase.value}.log")
        submit: Callable[[], object] = lambda: self.hooks.submit(  # noqa: E731
            phase.value, log_path, lambda reply: self.run_hook_done(run, reply), run.id, run.run_dir, run.sample)
        self.deferred.append(submit)

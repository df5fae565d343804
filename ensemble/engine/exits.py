"""Kills and exits: signalling steps, collecting their ends, and what an end means for the run."""
from __future__ import annotations

import logging
import signal
import time

from ensemble.engine.reactor import Source
from ensemble.engine.runqueue import shape_of
from ensemble.engine.runstate import Action, EngineState, KillReason, Outcome, Phase, RunState, after_step, outcome_of
from ensemble.status import RunStatus

log = logging.getLogger("ensemble.engine")


class Exits:
    """Mixed into the engine: kills, timeouts, step ends and requeues."""

    def kill(self, run: RunState, reason: KillReason) -> None:
        """Signal a running step's whole attempt (SIGTERM, SIGKILL after the grace period).

        A step that already exited is not signalled and keeps its real outcome; a dequeue
        during a timeout's kill still makes the outcome "killed".
        """
        if run.kill_reason is not None:
            if reason is KillReason.DEQUEUED:
                run.kill_reason = reason
            return
        if run.handle is None:
            run.kill_reason = reason
            return
        handle = run.handle
        if self.executor.signal(handle, signal.SIGTERM):
            run.kill_reason = reason
            run.timers.append(self.reactor.call_later(
                self.options.kill_grace, lambda: run.handle is handle and self.executor.signal(handle, signal.SIGKILL)))

    def _on_timeout(self, run: RunState, attempt_id: int) -> None:
        if run.handle is not None and run.attempt_id == attempt_id:
            self.kill(run, KillReason.TIMEOUT)

    def _on_exit(self, run: RunState) -> None:
        handle, run.handle = run.handle, None
        fd = self.executor.fileno(handle)
        if fd is None:
            self.channel_runs.pop(handle, None)
        else:
            self.reactor.unwatch(fd)
        ending = self.executor.collect(handle)
        for timer in run.timers:
            self.reactor.cancel(timer)
        run.timers.clear()
        if not self.pass_placement(run):
            self.pool.release(run.placement)
        run.placement = None
        if ending.lost:
            self._step_done(run, None, Outcome.INTERRUPTED, "how it ended is unknown: its node's worker, its "
                            "keeper or its allocation is gone")
        elif ending.error is not None:
            self._step_done(run, None, Outcome.LAUNCH_ERROR, f"step {run.step} could not start: {ending.error}")
        else:
            code = ending.code
            if code != 0 and run.kill_reason is None and self.state is EngineState.INTERRUPTING:
                # Ended badly while the manager is interrupted (Slurm signals every step of the job
                # at once): the interruption, not the run, is to blame; it runs again later.
                run.kill_reason = KillReason.INTERRUPTED
            self._step_done(run, code, outcome_of(code, run.kill_reason, self.config.abort_on), None, ending.at)

    def watch_channels(self) -> None:
        """Watch the executor's channels (at start) and take its lost nodes out of the pool."""
        for fd in self.executor.channels():
            self.reactor.watch(fd, Source.CHANNEL, None)
        self.drop_lost_nodes()

    def on_channel(self, fd: int) -> None:
        """A channel is readable: drop lost nodes first (their cores never come back), then end
        the attempts that ended."""
        ended = self.executor.on_readable(fd)
        if fd not in self.executor.channels():
            self.reactor.unwatch(fd)
        self.drop_lost_nodes()
        for handle, pid in self.executor.take_pids():
            run = self.channel_runs.get(handle)
            if run is not None and run.handle is handle and run.pending:
                self.chain_started(run, pid)
            elif run is not None and run.handle is handle:
                self.recorder.batch.set_pid(run.attempt_id, pid)
        for handle, job in self.executor.take_job_ids():
            run = self.channel_runs.get(handle)
            if run is not None and run.handle is handle:
                self.recorder.batch.set_job(run.attempt_id, job)
        for handle in ended:
            run = self.channel_runs.get(handle)
            if run is not None and run.handle is handle:
                self._on_exit(run)
        for handle in self.executor.take_cancelled():
            run = self.channel_runs.get(handle)
            if run is not None and run.handle is handle:
                self.chain_cancelled(run)

    def drop_lost_nodes(self) -> None:
        for node in sorted(self.executor.take_lost_nodes()):
            log.error("node %s is lost (its worker died): nothing more is placed there", node)
            self.pool.disable(node)
            self.recorder.batch.event(None, "node_lost", {"node": node})

    def end_attempt(self, run: RunState, code: int | None, outcome: Outcome, end: float | None = None) -> None:
        exit_code = code if code is not None and code >= 0 else None
        sig = -code if code is not None and code < 0 else None
        self.recorder.batch.end_attempt(run.attempt_id, end or time.time(), exit_code, sig, outcome.value)

    def _step_done(self, run: RunState, code: int | None, outcome: Outcome, message: str | None,
                   end: float | None = None) -> None:
        """Record the attempt's end (``end``: when it ended, if known better than now) and act on it."""
        end = end or time.time()
        self.end_attempt(run, code, outcome, end)
        self.note_step_time(end - run.attempt_started)
        decision = after_step(run, outcome, code, self.config.max_restarts, end - run.attempt_started, message)
        action = decision.action
        if action is Action.RELEASE:
            self.release_claim(run)
            return
        if action in (Action.FAIL, Action.ABORT):
            self.complete(run, RunStatus.FAILURE if action is Action.FAIL else RunStatus.ABORTED, decision.message)
            return
        if action is Action.FINISH:
            self._post_run(run)  # completes the run (its row gets the step and restarts too) or calls post_run
            return
        self.recorder.batch.progress(run.id, run.step, run.restarts)
        if action is Action.RETRY:
            self.recorder.batch.event(run.id, "restart", {"restarts": run.restarts, "why": decision.message})
            if decision.delay:
                run.phase = Phase.WAITING
                run.timers.append(self.reactor.call_later(decision.delay, lambda: self.requeue(run)))
            else:
                self.requeue(run)
        else:
            self.requeue(run)

    def requeue(self, run: RunState) -> None:
        """A claimed run's next attempt: start it at once if it fits, else it waits first in line."""
        run.timers.clear()
        if not self.state.launching:
            self.release_claim(run)
            return
        run.phase = Phase.WAITING
        if self._too_late(run):
            return
        placement = None if self.executor.start_room() == 0 else self.pool.allocate(*shape_of(run))
        if placement is None:
            self.queue.ready.appendleft(run)
        else:
            self.to_start.append((run, placement))

"""Steering a running manager: the inbox (dequeue, requeue, add, stop), stop and interrupt,
and reclaiming the runs of peers that died (several managers on one ensemble)."""
from __future__ import annotations

import logging
import time

from ensemble.engine.runstate import EngineState, KillReason, Phase, RunState
from ensemble.executors.procs import kill_tagged
from ensemble.setup import control
from ensemble.status import RunStatus
from ensemble.store.lease import HEARTBEAT_SECONDS, HOST, is_alive

INBOX_POLL_SECONDS = 0.5
log = logging.getLogger("ensemble.engine")


class Steering:
    """Mixed into the engine: applies changes that come from outside the loop."""

    def _ingest(self) -> control.Applied:
        with self.recorder.guard():
            return control.ingest(self.store, self.config, self.setup_dir, fence=self.recorder.fence)

    def poll_inbox(self) -> None:
        """Flush, then apply what others posted (dequeue, add, stop); heartbeat; reclaim dead peers."""
        self.next_poll = time.monotonic() + INBOX_POLL_SECONDS
        self.recorder.flush()
        applied = self._ingest()
        generation = self.store.generation()
        if generation != self.generation or applied.changed:
            self.generation = generation
            self.reconcile()
            if applied.stop and self.state.launching:
                self.stop("stop requested")
        if time.monotonic() >= self.next_heartbeat:
            self.next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
            self.recorder.heartbeat()
            if self.options.allow_multiple and self.reclaim_dead_peers():
                self.queue.reset()

    def reclaim_dead_peers(self) -> bool:
        """Free the runs of managers sharing this ensemble that died; True if any were freed."""
        with self.recorder.guard(), self.store.transaction():
            self.recorder.fence()
            dead = [lease for lease in self.store.leases()
                    if lease["manager"] != self.lease.manager and not is_alive(lease)]
            for lease in dead:
                self.store.drop_lease(lease["manager"])
            attempts, runs = self.store.recover_orphans(time.time()) if dead else (0, 0)
            if dead:
                self.store.add_events([(None, "peers_reclaimed", {"managers": [d["manager"] for d in dead],
                                                                  "attempts": attempts, "runs": runs})])
        kill_tagged([d["manager"] for d in dead if d["host"] == HOST])
        if dead:
            self.executor.kill_leftovers([d["manager"] for d in dead])
            log.warning("reclaimed %d runs of dead managers %s", runs, [d["manager"] for d in dead])
        return runs > 0

    def reconcile(self) -> None:
        """Runs changed outside the loop (dequeue, requeue, add): refresh what is in memory."""
        for run in list(self.queue.waiting):
            self.release_claim(run) if run.claimed else self.runs.pop(run.id, None)
        self.queue.reset()
        claimed = [r for r in self.runs.values() if r.claimed]
        for run_id, status in self.store.statuses([r.id for r in claimed]).items():
            run = self.runs[run_id]
            if status is not RunStatus.KILLED:
                continue
            if run.phase is Phase.STEP:
                self.kill(run, KillReason.DEQUEUED)
            elif run.phase is Phase.WAITING:
                self._unqueue(run)
                self.release_claim(run)
            else:
                run.kill_reason = KillReason.DEQUEUED
        self.failed = self.store.count_failed()
        self.check_failed_limit()

    def _unqueue(self, run: RunState) -> None:
        """Take a waiting run out of every queue, timer and pending start."""
        self.queue.discard(run)
        for timer in run.timers:
            self.reactor.cancel(timer)
        run.timers.clear()
        for entry in [e for e in self.to_start if e[0] is run]:
            self.to_start.remove(entry)
            self.pool.release(entry[1])

    def stop(self, reason: str) -> None:
        """Launch nothing new; runs in flight finish normally."""
        log.info("stopping: %s", reason)
        self.stop_reason = reason
        self.state = EngineState.STOPPING
        self.recorder.batch.event(None, "stopping", {"reason": reason})
        self.cancel_chains()
        for run in [r for r in self.runs.values() if r.phase is Phase.WAITING]:
            self._unqueue(run)
            self.release_claim(run) if run.claimed else self.runs.pop(run.id, None)
        self.queue.reset()
        self.queue.exhausted = True

    def interrupt(self, reason: str) -> None:
        """Stop and kill every running step; their attempts are recorded as interrupted."""
        self.stop(reason)
        self.state = EngineState.INTERRUPTING
        for run in list(self.runs.values()):
            if run.phase is Phase.STEP:
                self.kill(run, KillReason.INTERRUPTED)
        if self.hooks is not None:
            self.hooks.kill_busy()


"""Chained starts: the next run's attempt recorded while a step runs, started by the executor the
moment that step exits 0, on the placement it hands over.

With short steps a core otherwise sits idle from a step's exit until the manager has read the end,
committed it and sent the next start.  With a chain the executor (the spawner) starts the next
attempt at once and the manager catches up afterwards.  The end of a chain (a *tip*: a step on its
run's last step, running or itself waiting) gets at most one successor, and a chain holds at most
:data:`CHAIN_DEPTH` waiting starts, so the manager has that many steps' time to catch up.

Chains are made only where they pay and change nothing the user can see but speed: while the
steps that ended lately were short (:data:`CHAIN_BELOW`); where the executor starts steps itself
(:attr:`Executor.can_chain`); while the manager launches, with no ``max_concurrency`` and no
``prep_run`` hook, no claimed run waiting for room and no wide step holding a reservation; the
successor is the head of the queue and has the tip's shape; with a deadline, both timeouts fit.
A successor starts only if the inbox is as the manager last read it: a stop, dequeue or added
runs posted meanwhile (by a step, say) cancel it, so the manager decides with them in hand.
The successor's attempt is committed before it can start (as every attempt is), with the outcome
``chained`` until it starts; its start time and pid are written then, and its timeout counts from
then.  A successor that never starts
(its predecessor did not exit 0; it was cancelled by a stop, a dequeue or an interrupt) is taken
back: its attempt row is deleted, its attempt number reused, and it waits first in line.
"""
from __future__ import annotations

import time
from collections import deque

from ensemble.engine.runqueue import shape_of
from ensemble.engine.runstate import Phase, RunState
from ensemble.executors import Launch

#: Most chained starts waiting behind one running step.
CHAIN_DEPTH = 16
#: With a start waiting in every chain the manager lets time pass before its next turn, so one
#: turn (and one commit) handles the ends and starts of many steps: this share of the time the
#: shortest chain's waiting starts will take (at the steps' recent duration), at most
#: :data:`LINGER_MAX` seconds.
LINGER_SHARE = 0.5
LINGER_MAX = 0.02
#: Chains are made only while the steps that ended lately took less than this many seconds (a
#: moving average over about the last :data:`CHAIN_MEMORY` ends): behind longer steps a chained
#: start gains next to nothing, and its run would wait claimed (shown running) the whole time.
CHAIN_BELOW = 0.5
CHAIN_MEMORY = 16


class Chains:
    """Mixed into the engine: choosing successors, and their start or cancel."""

    def chainable_tip(self, run: RunState) -> bool:
        """Whether a step just started may get a successor (it is its run's last step)."""
        return self.executor.can_chain and run.step == len(run.steps) - 1

    def pick_chains(self) -> list[tuple[RunState, RunState]]:
        """(successor, tip) pairs in queue order: the head of the queue behind a chain end of its
        shape, the chains filled in turn up to :data:`CHAIN_DEPTH` (a successor may itself be
        the tip of the next pair)."""
        if not self._may_chain():
            return []
        ends: dict[tuple[int, int, int], deque[tuple[RunState, int, float | None]]] = {}
        for tip in self.tips:
            if tip.kill_reason is not None or tip in self.taking_back:
                continue
            depth = _waiting_in_chain(tip)
            if depth < CHAIN_DEPTH:
                ends.setdefault(shape_of(tip), deque()).append((tip, depth, _time_left(tip)))
        chains: list[tuple[RunState, RunState]] = []
        waiting = self.queue.waiting
        while waiting:
            run = waiting[0]
            line = ends.get(shape_of(run)) if not run.finished_steps else None
            if not line or not self._fits_after(run, line[0][2]):
                break
            tip, depth, left = line.popleft()
            waiting.popleft()
            if not run.claimed:
                self.recorder.claim(run.id)
                self.claimed(run)
                self.post_ensemble_done = False
            if run.step == 0 and not run.prepared and not self.prepare_run(run, None):
                line.appendleft((tip, depth, left))
                continue
            chains.append((run, tip))
            if depth + 1 < CHAIN_DEPTH and self.chainable_tip(run):
                line.append((run, depth + 1, None if left is None or not run.current.timeout
                             else left + run.current.timeout * 60))
        return chains

    def linger_s(self) -> float:
        """How long the manager may wait before its next turn with no core falling idle: 0 unless
        every chain has a start waiting, else :data:`LINGER_SHARE` of the time the shortest
        chain's waiting starts take, at most :data:`LINGER_MAX`."""
        if not self.chained or not self.tips or self.recent_step_s is None:
            return 0.0
        shortest = min(_waiting_in_chain(tip) for tip in self.tips)
        return min(LINGER_MAX, LINGER_SHARE * shortest * self.recent_step_s)

    def note_step_time(self, seconds: float) -> None:
        """An attempt ended after ``seconds``: update the moving average chains are judged by."""
        last = self.recent_step_s
        self.recent_step_s = seconds if last is None else last + (seconds - last) / CHAIN_MEMORY

    def _may_chain(self) -> bool:
        short = self.recent_step_s is not None and self.recent_step_s < CHAIN_BELOW
        return (short and bool(self.tips) and self.executor.can_chain and self.state.launching and not self.queue.ready
                and self.queue.reserved is None and self.options.max_concurrency is None
                and "prep_run" not in self.hook_names)

    def _fits_after(self, run: RunState, left: float | None) -> bool:
        """With a deadline, the successor's timeout must fit after the latest end of the chain it
        joins (``left`` seconds from now; None: unbounded)."""
        if self.deadline is None or not run.current.timeout:
            return True
        return left is not None and time.monotonic() + left + run.current.timeout * 60 <= self.deadline

    def spawn_chained(self, run: RunState, launch: Launch | Exception, attempt_id: int, tip: RunState) -> None:
        """Hand the start of ``run`` after ``tip`` to the executor (the placement is the tip's until it ends)."""
        run.attempt_id, run.pending = attempt_id, False
        if tip.handle is None:  # chained in this turn behind a run whose start failed
            self.take_back(run)
            return
        if isinstance(launch, Exception):
            run.placement = None
            self.tips.add(tip)
            self._launch_failed(run, launch, attempt_id)
            return
        inbox = (self.inbox_watch.path, self.inbox_watch.seen)
        run.handle = self.executor.chain(launch, tip.handle, unchanged=inbox)
        run.pending, run.after, tip.successor = True, tip, run
        self.channel_runs[run.handle] = run
        self.chained.add(run)
        self.tips.discard(tip)
        if self.chainable_tip(run):
            self.tips.add(run)

    def chain_started(self, run: RunState, pid: int) -> None:
        """A successor started: record when (as the executor saw it) and as what, count its
        timeout from now."""
        run.pending = False
        self.chained.discard(run)
        self.taking_back.discard(run)
        run.attempt_started = run.handle.start or time.time()
        self.recorder.batch.chained_start(run.attempt_id, pid, run.attempt_started)
        self.arm_timeout(run)

    def chain_cancelled(self, run: RunState) -> None:
        """A successor never started: its attempt never existed; it waits first in line (or goes
        back to the queue when the manager stops launching or it was killed).  The placement stays
        with the step it waited for while that runs, passes to what waited for it (cancelled next,
        by the executor), or is given back."""
        self.tips.discard(run)
        self.chained.discard(run)
        self.taking_back.discard(run)
        handle, run.handle, run.pending = run.handle, None, False
        self.channel_runs.pop(handle, None)
        for timer in run.timers:
            self.reactor.cancel(timer)
        run.timers.clear()
        tip, run.after = run.after, None
        if tip is not None:
            if tip.successor is run:
                tip.successor = None
                if tip.handle is not None and self.chainable_tip(tip):
                    self.tips.add(tip)
        elif run.successor is not None:
            run.successor.after = None
        else:
            self.pool.release(run.placement)
        run.successor = None
        self.take_back(run)

    def take_back(self, run: RunState) -> None:
        """A chained attempt that never started never existed: its row is deleted and its number
        reused; the run waits first in line (or is released when the manager stops launching or
        it was killed)."""
        self.recorder.batch.drop_attempt(run.attempt_id)
        run.attempt_id, run.attempts = None, run.attempts - 1
        run.placement, run.phase = None, Phase.WAITING
        killed, run.kill_reason = run.kill_reason, None
        if killed is not None:
            self.release_claim(run)
        else:
            self.requeue(run)

    def cancel_chains(self) -> None:
        """Launching stops: cancel every successor that has not started (one that has runs on)."""
        self.tips.clear()
        for run in self.chained:
            self.executor.cancel(run.handle)
        self.chained.clear()

    def take_back_idle(self) -> None:
        """Placements are free that runs waiting last in a chain fit (nothing else in line took
        them): take as many such runs back, so they start there instead of waiting."""
        if not self.chained or not self.pool.any_free():
            return
        # Placements that runs already being taken back will start on are not free for others.
        held = [p for p in (self.pool.allocate(*shape_of(r)) for r in self.taking_back) if p is not None]
        for run in [r for r in self.tips if r in self.chained and r.after is not None]:
            placement = self.pool.allocate(*shape_of(run))
            if placement is None:
                continue
            held.append(placement)
            self.chained.discard(run)
            self.tips.discard(run)
            self.taking_back.add(run)
            self.executor.cancel(run.handle)
        for placement in held:
            self.pool.release(placement)

    def pass_placement(self, run: RunState) -> bool:
        """At the end of ``run``'s step: whether its successor took its placement over."""
        self.tips.discard(run)
        self.chained.discard(run)
        self.taking_back.discard(run)
        run.pending = False
        successor, run.successor = run.successor, None
        if successor is None:
            return False
        successor.after = None
        return True


def _time_left(tip: RunState) -> float | None:
    """Seconds from now by which the chain ending at ``tip`` has ended at the latest (its steps'
    timeouts; the running one's counted from its start), None without a bound."""
    total, run = 0.0, tip
    while run is not None:
        if not run.current.timeout:
            return None
        if not run.pending:
            return total + max(0.0, run.current.timeout * 60 - (time.time() - run.attempt_started))
        total, run = total + run.current.timeout * 60, run.after
    return total


def _waiting_in_chain(tip: RunState) -> int:
    """How many chained starts wait up to and including ``tip``."""
    count, run = 0, tip
    while run is not None and run.pending:
        count, run = count + 1, run.after
    return count

"""The ledger: which runs this manager holds in memory, and their claims in the database."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ensemble.engine.prefetch import UNDECIDED, decide_prefetch
from ensemble.engine.runqueue import FETCH_BATCH
from ensemble.engine.runstate import RunState
from ensemble.spec import Step
from ensemble.status import RunStatus
from ensemble.store.runs import STEPSET_CACHE


class Ledger:
    """Mixed into the engine: loading, claiming, completing and releasing runs."""

    def refill(self) -> None:
        if not self.queue.wants_more():
            return
        self.recorder.flush()
        if self.options.allow_multiple:
            room = self.room()
            free = sum(len(c) for c in self.pool.free_cores.values())
            want = (free if room is None else min(free, room)) - len(self.queue.waiting)
            if want <= 0:
                return
            runs = self.load_runs(self.recorder.claim_next(min(want, FETCH_BATCH), self.too_large | self.later,
                                                           self.options.run_range))
            for run in runs:
                self.claimed(run)
        else:
            ids = [i for i in self.store.queued_ids(self.queue.cursor, FETCH_BATCH, self.options.run_range)
                   if i not in self.runs and i not in self.later]
            runs = self.load_runs(ids) if ids else []
        for run in runs:
            self.runs[run.id] = run
        self.queue.add_loaded(runs)
        if self.prefetch is UNDECIDED and runs:
            self.prefetch = decide_prefetch(Path(runs[0].run_dir).parent, len(runs))

    def load_runs(self, ids: list[int]) -> list[RunState]:
        """Fresh in-memory states of runs from the database (with their attempt counts)."""
        counts = self.store.attempt_counts(ids)
        return [RunState(run_id, json.loads(sample), self._steps(stepset, steps), run_dir, step, restarts,
                         counts.get(run_id, 0), prepared=step > 0, sample_json=sample)
                for run_id, sample, stepset, steps, run_dir, step, restarts in self.store.runs_to_execute(ids)]

    def _steps(self, stepset: int, steps_json: str) -> list[Step]:
        """The steps of a stepset, decoded once and shared by its runs (steps are frozen; nothing
        changes a run's list)."""
        steps = self.stepsets.get(stepset)
        if steps is None:
            if len(self.stepsets) >= STEPSET_CACHE:  # runs with steps of their own: keep memory bounded
                self.stepsets.clear()
            steps = self.stepsets[stepset] = [Step.from_dict(s) for s in json.loads(steps_json)]
        return steps

    def room(self) -> int | None:
        """How many more runs may start under ``max_concurrency`` (None: no limit).  Claimed runs
        still waiting (several managers claim ahead) have not started."""
        limit = self.options.max_concurrency
        if limit is None:
            return None
        waiting_claimed = len(self.queue.waiting) if self.options.allow_multiple else 0
        return max(0, limit - (self.inflight - waiting_claimed))

    def start_room(self) -> int | None:
        """How many runs may start this turn: ``max_concurrency`` and the executor's own rate limit."""
        limits = [r for r in (self.room(), self.executor.start_room()) if r is not None]
        return max(0, min(limits)) if limits else None

    def claimed(self, run: RunState) -> None:
        run.claimed = True
        self.inflight += 1

    def complete(self, run: RunState, status: RunStatus, message: str | None, result_json: str | None = None) -> None:
        self.recorder.batch.complete(run.id, status, run.step, run.restarts, message, result_json)
        self.recorder.batch.event(run.id, status.label, None if message is None else {"message": message})
        self.forget(run)
        if status is RunStatus.FAILURE:
            self.failed += 1
            self.check_failed_limit()

    def check_failed_limit(self) -> None:
        limit = self.config.max_failed_runs
        if limit is not None and self.failed > limit and self.state.launching:
            self.max_failed_stop = True
            self.stop(f"max_failed_runs exceeded: {self.failed} failed runs > {limit}")

    def release_claim(self, run: RunState) -> None:
        """Give a run back to the queue as it is (interrupted, stopped, dequeued)."""
        self.recorder.batch.unclaim(run.id, run.step, run.restarts)
        self.forget(run)
        self.queue.rewind(run.id)

    def forget(self, run: RunState) -> None:
        if run.logs is not None:
            for fd in run.logs:
                os.close(fd)
            run.logs = None
        if run.claimed:
            run.claimed = False
            self.inflight -= 1
        self.runs.pop(run.id, None)


"""The run queue: which runs wait, which get resources next.

``waiting`` holds runs read from the database that have not started in this
manager; ``ready`` holds claimed runs between steps (next step, restart) that
wait for room.  :meth:`RunQueue.pick` places ready runs first, then waiting
ones in id order, skipping shapes already found too big this turn (backfill),
and holds a reservation for a wide step that small ones keep passing.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ensemble.engine.runstate import RunState
from ensemble.providers.resources import Placement, Pool

FETCH_BATCH = 512
SCAN_WINDOW = 1024

Shape = tuple[int, int, int]


def shape_of(run: RunState) -> Shape:
    step = run.current
    return step.tasks, step.cores_per_task, step.gpus_per_task


@dataclass
class RunQueue:
    """Waiting and ready runs of one manager, and the order they start in."""

    pool: Pool
    waiting: deque[RunState] = field(default_factory=deque)
    ready: deque[RunState] = field(default_factory=deque)
    cursor: int = 0
    exhausted: bool = False
    reserved: RunState | None = None
    passed: int = 0

    def __post_init__(self) -> None:
        #: Placements given to other runs while a wide step waits before it is reserved for.
        self.reserve_after = max(1, self.pool.total_cores)

    def empty(self) -> bool:
        return not self.waiting and not self.ready

    def wants_more(self) -> bool:
        return not self.exhausted and len(self.waiting) < FETCH_BATCH // 2

    def add_loaded(self, runs: list[RunState]) -> None:
        if not runs:
            self.exhausted = True
            return
        self.cursor = max(self.cursor, runs[-1].id)
        self.waiting.extend(runs)

    def rewind(self, run_id: int) -> None:
        """A run went back to the database queue: read it again."""
        self.cursor, self.exhausted = min(self.cursor, run_id - 1), False

    def reset(self) -> None:
        self.waiting.clear()
        self.cursor, self.exhausted = 0, False
        self.reserved, self.passed = None, 0

    def discard(self, run: RunState) -> None:
        for queue in (self.waiting, self.ready):
            try:
                queue.remove(run)
            except ValueError:
                continue
        if self.reserved is run:
            self.reserved, self.passed = None, 0

    def pick(self, room: int | None,
             cannot_start: Callable[[RunState], bool]) -> list[tuple[RunState, Placement | None]]:
        """Take runs that fit now (at most ``room`` of them when set) with their placements.

        ``cannot_start(run)`` is asked first for each run; True drops it from the queue (the
        caller fails it or leaves it for later).  A run whose steps are all done needs no placement.
        """
        chosen: list[tuple[RunState, Placement | None]] = []
        full: set[Shape] = set()
        for queue in (self.ready, self.waiting):
            for run in list(queue)[:SCAN_WINDOW]:
                if room is not None and len(chosen) >= room or not self.pool.any_free():
                    return chosen
                if cannot_start(run):
                    queue.remove(run)
                    if self.reserved is run:
                        self.reserved, self.passed = None, 0
                    continue
                placement = self._place(run, full)
                if placement is False:
                    if self.reserved is not None and self.passed >= self.reserve_after:
                        return chosen
                    continue
                queue.remove(run)
                chosen.append((run, placement))
        return chosen

    def _place(self, run: RunState, full: set[Shape]) -> Placement | None | bool:
        """A placement for the run, None if it needs none, False if it does not fit now."""
        if run.finished_steps:
            return None
        shape = shape_of(run)
        if self.reserved is not None and self.reserved is not run and self.passed >= self.reserve_after:
            return False
        placement = None if shape in full else self.pool.allocate(*shape)
        if placement is None:
            full.add(shape)
            if self.reserved is None:
                self.reserved, self.passed = run, 0
            return False
        if self.reserved is run:
            self.reserved, self.passed = None, 0
        elif self.reserved is not None:
            self.passed += 1
        return placement

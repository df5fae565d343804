"""The recorder: the engine's only way to write, in batches, fenced by its lease.

Every flush is one ``BEGIN IMMEDIATE`` transaction that first renews this
manager's lease row; when the row is gone (another manager took the ensemble
over after this one stalled) the transaction is rolled back and
:class:`LeaseLost` is raised, so a fenced-off manager never writes again.
A full file system surfaces as :class:`DiskFull`, never as a traceback.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ensemble.providers.resources import Placement
from ensemble.store import Store, WriteBatch, is_disk_full
from ensemble.store.lease import HOST

#: Most commands and placements whose JSON the recorder keeps.
JSON_CACHE = 4096


class LeaseLost(Exception):
    """This manager's lease was taken over: it must stop without writing."""


class DiskFull(Exception):
    """The file system holding the setup or run directories is full."""


@dataclass
class PendingStart:
    """An attempt to record before its process starts."""

    run_id: int
    step: int
    attempt: int
    start: float
    command: list[str]
    placement: Placement | None
    #: Recorded as waiting behind another step (a chained start, :mod:`ensemble.engine.chain`).
    chained: bool = False
    attempt_id: int | None = None


@dataclass
class Recorder:
    """Batched, fenced writes of one manager."""

    store: Store
    manager: str
    batch: WriteBatch = field(init=False)
    claims: list[int] = field(default_factory=list)
    starts: list[PendingStart] = field(default_factory=list)
    #: Called after each commit (the executor reaps the attempts whose ends it carried).
    on_commit: Callable[[], None] = lambda: None
    #: JSON of commands and placements already written: runs of one stepset mostly share their
    #: command, and a pool hands out few distinct placements.
    json_of: dict[object, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.batch = WriteBatch(self.manager)
        self._guard = _FullGuard(Path(self.store.path).parent)

    def fence(self) -> None:
        """Inside a transaction: renew the lease or raise :class:`LeaseLost`."""
        if not self.store.renew_lease(self.manager):
            raise LeaseLost(f"lease lost: manager {self.manager} no longer holds a lease on {self.store.path}")

    def claim(self, run_id: int) -> None:
        self.claims.append(run_id)

    def record_start(self, start: PendingStart) -> None:
        self.starts.append(start)

    def flush(self) -> set[int]:
        """Commit claims, the batch and pending attempt starts; return run ids whose claim lost."""
        if not self.batch and not self.claims and not self.starts:
            return set()
        lost: set[int] = set()
        with self.guard():
            with self.store.transaction():
                self.fence()
                lost = self.store.claim_all(self.manager, self.claims) if self.claims else set()
                self.store.apply(self.batch)
                starts = [s for s in self.starts if s.run_id not in lost]
                rows = [(s.run_id, s.step, s.attempt, s.start, self._json(tuple(s.command), s.command),
                         None if s.placement is None else self._json(s.placement, s.placement.to_list()), s.chained)
                        for s in starts]
                for start, attempt_id in zip(starts, self.store.insert_attempts(self.manager, HOST, rows)):
                    start.attempt_id = attempt_id
        self.batch.clear()
        self.claims.clear()
        self.starts = []
        self.on_commit()
        return lost

    def _json(self, key: object, value: object) -> str:
        text = self.json_of.get(key)
        if text is None:
            if len(self.json_of) >= JSON_CACHE:
                self.json_of.clear()
            text = self.json_of[key] = json.dumps(value)
        return text

    def heartbeat(self) -> None:
        with self.guard(), self.store.transaction():
            self.fence()

    def claim_next(self, limit: int, exclude: set[int], run_range: tuple[int, int] | None = None) -> list[int]:
        """Claim up to ``limit`` unclaimed runs at once (several managers share the work)."""
        with self.guard(), self.store.transaction():
            self.fence()
            return self.store.claim_next(self.manager, limit, sorted(exclude), run_range)

    def guard(self) -> "_FullGuard":
        return self._guard


class _FullGuard:
    """Turns SQLITE_FULL / ENOSPC into :class:`DiskFull` naming the directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and is_disk_full(exc):
            raise DiskFull(f"file system full: cannot write {self.directory} ({exc})") from exc
        return False

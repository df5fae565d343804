"""Progress on long commands: a bar with rate and ETA on standard error, drawn by ``rich``.

Shown only when the stream is a terminal and the command is not ``--quiet``; otherwise the
functions here print nothing at all (tests, batch jobs, redirected output).  Two shapes:

* :func:`bar`: a context manager yielding ``advance(n=1)``, for a loop the caller runs;
* :func:`watch_runs`: completed / total runs of an executing ensemble with per-status counts,
  read about twice a second from read-only snapshots of its store by a daemon thread with its
  own connection (it never writes the database and never runs in the engine's loop).
"""
from __future__ import annotations

import math
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ensemble.status import COMPLETED, RunStatus
from ensemble.store import Store

if TYPE_CHECKING:  # rich is imported only when a bar is drawn (25 ms of every command's start otherwise)
    from rich.progress import Progress, TaskID

#: ``advance(n)``: n more items are done.
Advance = Callable[[int], None]
#: Seconds between two redraws of a bar fed by :func:`bar` (its loop may call ``advance`` a million times).
FLUSH_SECONDS = 0.1
#: Seconds between two snapshots of the store in :func:`watch_runs`.
POLL_SECONDS = 0.5


def shown(quiet: bool, stream: TextIO | None = None) -> bool:
    """Whether progress is drawn: not ``quiet`` and ``stream`` (default standard error) a terminal."""
    stream = sys.stderr if stream is None else stream
    return not quiet and stream.isatty()


def _display(stream: TextIO, counted: bool) -> Progress:
    """A bar with count, rate and ETA (``counted``), else a spinner with the time so far; removed
    when done.  Standard output is left alone (a summary may be streaming there)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second, once rich has an estimate."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")

    columns = ([TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[note]}")] if counted
               else [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()])
    return Progress(*columns, console=Console(file=stream), transient=True, redirect_stdout=False)


def _ignore(n: int = 1) -> None:
    """``advance`` when nothing is shown."""


class _Counter:
    """Adds up ``advance`` calls and passes them on to the bar every :data:`FLUSH_SECONDS`, and
    as soon as the total is reached (work after the loop leaves a full bar, not a stale one)."""

    def __init__(self, display: Progress, task: TaskID, total: int | None) -> None:
        self.display, self.task = display, task
        self.pending = 0
        self.left = math.inf if total is None else total
        self.due = time.monotonic() + FLUSH_SECONDS

    def advance(self, n: int = 1) -> None:
        self.pending += n
        if self.pending >= self.left or time.monotonic() >= self.due:
            self.flush()

    def flush(self) -> None:
        self.display.advance(self.task, self.pending)
        self.left -= self.pending
        self.pending = 0
        self.due = time.monotonic() + FLUSH_SECONDS


@contextmanager
def bar(description: str, total: int | None = None, *, quiet: bool = False,
        stream: TextIO | None = None) -> Iterator[Advance]:
    """Yield ``advance(n=1)`` for a bar of ``total`` items (None: a spinner for work not counted).

    The bar is drawn on ``stream`` (default standard error) while the block runs and removed
    when it ends; when :func:`shown` is false, ``advance`` does nothing and nothing is printed.
    """
    stream = sys.stderr if stream is None else stream
    if not shown(quiet, stream):
        yield _ignore
        return
    with _display(stream, counted=total is not None) as display:
        counter = _Counter(display, display.add_task(description, total=total, note=""), total)
        try:
            yield counter.advance
        finally:
            counter.flush()


def _note(counts: dict[RunStatus, int], running: int) -> str:
    """``running 4, success 120, failure 3``: the runs in flight and the completed statuses seen."""
    parts = [("running", running), *((s.label, counts[s]) for s in COMPLETED)]
    return ", ".join(f"{label} {n}" for label, n in parts if n)


class _RunWatcher:
    """A daemon thread drawing an ensemble's progress from read-only snapshots of its store."""

    def __init__(self, setup_dir: Path, display: Progress) -> None:
        self.store = Store.open(setup_dir, readonly=True)
        self.display = display
        self.stopping = threading.Event()
        done, total, note = self._snapshot()
        self.task = display.add_task("runs", total=total, completed=done, note=note)
        self.thread = threading.Thread(target=self._watch, name="ensemble-progress", daemon=True)
        self.thread.start()

    def _snapshot(self) -> tuple[int, int, str]:
        counts = self.store.counts_by_status()
        return sum(counts[s] for s in COMPLETED), sum(counts.values()), _note(counts, self.store.count_running())

    def _draw(self) -> None:
        try:
            done, total, note = self._snapshot()
        except sqlite3.Error:
            return  # busy or locked this time: the next snapshot will do
        self.display.update(self.task, total=total, completed=done, note=note)

    def _watch(self) -> None:
        try:
            while not self.stopping.wait(POLL_SECONDS):
                self._draw()
            self._draw()
        finally:
            self.store.close()

    def stop(self) -> None:
        """Draw the last snapshot, close the connection and end the thread."""
        self.stopping.set()
        self.thread.join()


@contextmanager
def watch_runs(setup_dir: Path, *, quiet: bool = False, stream: TextIO | None = None) -> Iterator[None]:
    """While the block runs (a manager executing the ensemble in ``setup_dir``), draw completed /
    total runs with rate, ETA and per-status counts on ``stream`` (default standard error).

    The last snapshot is drawn once the block ends, then the thread is joined; when
    :func:`shown` is false, nothing is read and nothing is printed.
    """
    stream = sys.stderr if stream is None else stream
    if not shown(quiet, stream):
        yield
        return
    with _display(stream, counted=True) as display:
        watcher = _RunWatcher(setup_dir, display)
        try:
            yield
        finally:
            watcher.stop()

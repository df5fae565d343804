"""``ensemble status --watch``: a live view of an ensemble, refreshed from read-only snapshots.

Each refresh opens nothing new: one read-only connection runs a handful of indexed queries
(counts per status, the running attempts, the last failures) and never takes the writer's lock,
so watching from a login node over ssh does not slow the manager.  On a terminal the view is
redrawn in place (``rich.live``); elsewhere one plain snapshot is printed per refresh.  It ends
by itself when nothing is queued any more, or on Ctrl-C.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ensemble.manager import Ensemble
from ensemble.results.failures import failure_report
from ensemble.status import RunStatus

#: Seconds over which runs/s is measured.
RATE_WINDOW = 60.0
#: Running runs listed at most.
RUNNING_SHOWN = 10


@dataclass
class Snapshot:
    """What one refresh read."""

    time: float
    counts: dict[str, int]
    running: list[tuple[int, int, float]]
    failures: list[str]

    @property
    def completed(self) -> int:
        return self.counts["total"] - self.counts["queued"]


@dataclass
class Watcher:
    """Reads snapshots of one ensemble and keeps the recent ones for the rate."""

    ensemble: Ensemble
    history: deque = field(default_factory=lambda: deque(maxlen=1000))

    def read(self) -> Snapshot:
        store = self.ensemble.store
        rows = store.conn.execute("SELECT run_id, step, start FROM attempts WHERE end IS NULL AND outcome IS NULL "
                                  "ORDER BY start LIMIT ?", (RUNNING_SHOWN,)).fetchall()
        snap = Snapshot(time.time(), self.ensemble.status_counts(), [(r[0], r[1], r[2]) for r in rows],
                        failure_report(self.ensemble.store, limit=3, lines=2))
        self.history.append((snap.time, snap.completed))
        return snap

    def rate(self) -> float | None:
        """Runs completed per second over the last :data:`RATE_WINDOW` seconds (None: not known yet)."""
        recent = [(t, c) for t, c in self.history if t >= self.history[-1][0] - RATE_WINDOW]
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return None
        return (recent[-1][1] - recent[0][1]) / (recent[-1][0] - recent[0][0])


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def render(snap: Snapshot, rate: float | None) -> Group:
    """The view of one snapshot: a bar with counts, rate and ETA, the running runs, the last failures."""
    counts, total = snap.counts, snap.counts["total"] or 1
    left = counts["queued"]
    eta = _duration(left / rate) if rate else "unknown"
    done = Text(f"{snap.completed}/{counts['total']} completed, {counts['running']} running, "
                f"{left - counts['running']} waiting; {'?' if rate is None else f'{rate:.2f}'} runs/s; eta {eta}")
    by_status = Text("  ".join(f"{s.label} {counts[s.label]}" for s in RunStatus if s is not RunStatus.QUEUED))
    parts: list[Any] = [ProgressBar(total=total, completed=snap.completed, width=60), Text(""), done, by_status]
    if snap.running:
        table = Table("run", "step", "elapsed", title=f"running (first {RUNNING_SHOWN})", title_justify="left")
        for run_id, step, start in snap.running:
            table.add_row(str(run_id), str(step), _duration(snap.time - start))
        parts.append(table)
    parts += [Text(line) for line in snap.failures]
    return Group(*parts)


def watch(ensemble: Ensemble, interval: float, console: Console | None = None) -> int:
    """Show the live view until nothing is queued (returns 0) or Ctrl-C (returns 130)."""
    console = console or Console()
    watcher = Watcher(ensemble)
    try:
        if console.is_terminal:
            with Live(console=console, auto_refresh=False) as live:
                while _turn(watcher, lambda view: live.update(view, refresh=True)):
                    time.sleep(interval)
        else:
            while _turn(watcher, lambda view: (console.print(view), console.file.flush())):
                time.sleep(interval)
    except KeyboardInterrupt:
        return 130
    return 0


def _turn(watcher: Watcher, show) -> bool:
    """Read and show one snapshot; whether to go on (runs are still queued)."""
    snap = watcher.read()
    show(render(snap, watcher.rate()))
    return snap.counts["queued"] > 0

"""Charts of an ensemble as PNG files (matplotlib, ``pip install 'ensemble[plots]'``).

* ``timeline``: every attempt as a bar on the cores it held (one lane per node and core), coloured
  by outcome: where the allocation's time went.
* ``utilization``: cores busy over time against the cores the managers had.
* ``results``: a result column against a sample column, one point per run, by status.

Each ``*_data`` function returns the numbers behind its chart, so they can be checked without
looking at pixels; each ``plot_*`` function writes the PNG and returns that data.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ensemble.errors import EnsembleError, SpecError
from ensemble.manager import Ensemble

OUTCOME_COLOURS = {"success": "tab:green", "failure": "tab:red", "timeout": "tab:orange", "aborted": "tab:purple",
                   "killed": "tab:gray", "interrupted": "tab:blue", "launch_error": "black"}
SIZE, DPI = (9, 5), 100


class Records(Protocol):
    """What the chart data is read from: an :class:`~ensemble.Ensemble` or a (read-only) store."""

    def attempts(self) -> list[dict[str, Any]]: ...

    def events(self) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Bar:
    """One attempt on one core lane: seconds from the first start."""

    lane: str
    start: float
    end: float
    outcome: str
    run_id: int


def _closed(attempts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in attempts if a["end"] is not None]


def timeline_data(ensemble: Records) -> list[Bar]:
    """A bar per attempt and core it held (attempts still running are left out)."""
    attempts = _closed(ensemble.attempts())
    if not attempts:
        return []
    origin = min(a["start"] for a in attempts)
    bars = []
    for a in attempts:
        for share in a["placement"] or [{"node": a["host"], "cores": [0]}]:
            for core in share.get("cores") or [0]:
                bars.append(Bar(f"{share['node']}:{core}", a["start"] - origin, a["end"] - origin,
                                a["outcome"] or "unknown", a["run_id"]))
    return bars


def utilization_data(ensemble: Records) -> tuple[list[float], list[int], int]:
    """Times (s from the first start), cores busy from each time on, and the cores available
    (the most any manager had)."""
    attempts = _closed(ensemble.attempts())
    available = max((e["detail"].get("cores", 0) for e in ensemble.events() if e["kind"] == "manager_started"
                     and e["detail"]), default=0)
    if not attempts:
        return [], [], available
    origin = min(a["start"] for a in attempts)
    changes: dict[float, int] = {}
    for a in attempts:
        cores = sum(len(s.get("cores") or [0]) for s in a["placement"] or [{}]) or 1
        changes[a["start"] - origin] = changes.get(a["start"] - origin, 0) + cores
        changes[a["end"] - origin] = changes.get(a["end"] - origin, 0) - cores
    times, busy, level = [], [], 0
    for time in sorted(changes):
        level += changes[time]
        times.append(time)
        busy.append(level)
    return times, busy, available


def results_data(ensemble: Ensemble, x: str, y: str) -> dict[str, tuple[list[Any], list[Any]]]:
    """``(x values, y values)`` per status, for the runs that have both."""
    df = ensemble.as_dataframe()
    missing = [c for c in (x, y) if c not in df.columns]
    if missing:
        raise SpecError(f"plot results: no column {', '.join(map(repr, missing))}; the columns are "
                        f"{', '.join(map(str, df.columns))}")
    df = df[df[x].notna() & df[y].notna()]
    return {str(status): (group[x].tolist(), group[y].tolist()) for status, group in df.groupby("status")}


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise EnsembleError("plot: matplotlib is not installed (pip install 'ensemble[plots]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def plot_timeline(ensemble: Ensemble, path: Path) -> list[Bar]:
    bars = timeline_data(ensemble)
    plt = _pyplot()
    lanes = sorted({b.lane for b in bars}, key=lambda lane: (lane.rsplit(":", 1)[0], int(lane.rsplit(":", 1)[1])))
    row = {lane: k for k, lane in enumerate(lanes)}
    fig, ax = plt.subplots(figsize=SIZE)
    for outcome in sorted({b.outcome for b in bars}):
        mine = [b for b in bars if b.outcome == outcome]
        ax.barh([row[b.lane] for b in mine], [b.end - b.start for b in mine], left=[b.start for b in mine],
                height=0.8, color=OUTCOME_COLOURS.get(outcome, "tab:brown"), label=outcome, edgecolor="white",
                linewidth=0.5)
    ax.set_yticks(range(len(lanes)), lanes, fontsize=6 if len(lanes) > 24 else 8)
    ax.set(xlabel="seconds since the first start", ylabel="node:core", title=f"{len(bars)} attempt-cores")
    if bars:
        ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return bars


def plot_utilization(ensemble: Ensemble, path: Path) -> tuple[list[float], list[int], int]:
    times, busy, available = utilization_data(ensemble)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    if times:
        ax.step(times, busy, where="post", label="cores busy")
    if available:
        ax.axhline(available, color="tab:gray", linestyle="--", label=f"{available} cores available")
    ax.set(xlabel="seconds since the first start", ylabel="cores", title="utilization")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return times, busy, available


def plot_results(ensemble: Ensemble, path: Path, x: str, y: str) -> dict[str, tuple[list[Any], list[Any]]]:
    data = results_data(ensemble, x, y)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=SIZE)
    for status, (xs, ys) in data.items():
        ax.scatter(xs, ys, label=status, color=OUTCOME_COLOURS.get(status, "tab:brown"), s=18)
    ax.set(xlabel=x, ylabel=y, title=f"{y} against {x}")
    if data:
        ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
    return data

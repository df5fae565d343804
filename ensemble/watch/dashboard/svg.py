"""Charts as inline SVG, drawn on the server from :mod:`ensemble.watch.plots`' data (no JavaScript,
nothing fetched).  A chart of a large ensemble stays small: the timeline draws the last
:data:`MAX_BARS` attempt-cores, the utilization curve at most one step per pixel column."""
from __future__ import annotations

import math
from collections.abc import Sequence

from ensemble.watch.dashboard.layout import esc, seconds
from ensemble.watch.plots import Bar

#: Outcome colours (matplotlib's ``tab:`` palette, as ``ensemble plot`` uses).
COLOURS = {"success": "#2ca02c", "failure": "#d62728", "timeout": "#ff7f0e", "aborted": "#9467bd",
           "killed": "#7f7f7f", "interrupted": "#1f77b4", "launch_error": "#000000"}
OTHER = "#8c564b"
WIDTH, LEFT, RIGHT, TOP, BOTTOM = 960, 110, 20, 34, 40
PLOT = WIDTH - LEFT - RIGHT
MAX_BARS = 5000
#: The most height the lanes of a timeline take, and the thinnest and thickest lane.
LANES_HEIGHT, THIN, THICK = 520, 2, 18


def ticks(high: float, count: int = 6, whole: bool = False) -> list[float]:
    """Round tick values from 0 to at least ``high`` (``whole``: a step of at least 1).

    >>> ticks(10)
    [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    >>> ticks(0.7, 4)
    [0.0, 0.5, 1.0]
    >>> ticks(2, 5, whole=True)
    [0.0, 1.0, 2.0]
    """
    raw = max(high, 1e-9) / max(count - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    step = max(step, 1.0) if whole else step
    return [round(k * step, 10) for k in range(math.ceil(high / step - 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:g}"


def _x_axis(top: float, bottom: float, end: float, unit: str) -> list[str]:
    out = [f'<line x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}" stroke="#444"/>']
    for value in ticks(end):
        x = LEFT + PLOT * value / end
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#e4e4e4"/>'
                   f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_label(value)}</text>')
    out.append(f'<text x="{LEFT + PLOT / 2}" y="{bottom + 34}" text-anchor="middle">{esc(unit)}</text>')
    return out


def _legend(items: Sequence[tuple[str, str]]) -> str:
    parts, x = [], LEFT
    for name, colour in items:
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="18">{esc(name)}</text>')
        x += 28 + 8 * len(name)
    return "".join(parts)


def _svg(height: float, label: str, parts: Sequence[str]) -> str:
    return (f'<svg class="chart" role="img" aria-label="{esc(label)}" viewBox="0 0 {WIDTH} {height:.0f}" '
            f'width="{WIDTH}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg" font-size="11" '
            f'font-family="sans-serif">{"".join(parts)}</svg>')


def _lane_key(lane: str) -> tuple[str, int | str]:
    node, _, core = lane.rpartition(":")
    return (node, int(core)) if core.isdigit() else (node, core)


def timeline(bars: Sequence[Bar]) -> str:
    """Every attempt-core as a bar on its node:core lane, coloured by outcome, linked to its run."""
    if not bars:
        return '<p class="empty">No finished attempts yet.</p>'
    shown = sorted(bars, key=lambda b: (b.start, b.end))[-MAX_BARS:]
    lanes = sorted({b.lane for b in shown}, key=_lane_key)
    row = {lane: k for k, lane in enumerate(lanes)}
    lane = max(THIN, min(THICK, LANES_HEIGHT // len(lanes)))
    bottom = TOP + lane * len(lanes)
    end = max(b.end for b in shown) or 1.0
    parts = _x_axis(TOP, bottom, end, "seconds since the first start")
    if lane >= 9:
        parts += [f'<text x="{LEFT - 6}" y="{TOP + lane * k + lane * 0.7:.1f}" text-anchor="end">{esc(name)}</text>'
                  for k, name in enumerate(lanes)]
    for bar in shown:
        x, width = LEFT + PLOT * bar.start / end, max(PLOT * (bar.end - bar.start) / end, 0.6)
        tip = f"run {bar.run_id}: {bar.outcome}, {seconds(bar.end - bar.start)} on {bar.lane}"
        parts.append(f'<a href="/run/{bar.run_id}"><rect x="{x:.2f}" y="{TOP + lane * row[bar.lane] + 1}" '
                     f'width="{width:.2f}" height="{max(lane - 2, 1)}" fill="{COLOURS.get(bar.outcome, OTHER)}">'
                     f"<title>{esc(tip)}</title></rect></a>")
    outcomes = sorted({b.outcome for b in shown})
    parts.append(_legend([(o, COLOURS.get(o, OTHER)) for o in outcomes]))
    label = f"timeline of {len(shown)} attempt-cores on {len(lanes)} node:core lanes"
    note = f" (the last {len(shown)} of {len(bars)})" if len(shown) < len(bars) else ""
    return _svg(bottom + BOTTOM, label, parts) + f'<p class="caption">{esc(label)}{note}</p>'


def envelope(times: Sequence[float], busy: Sequence[int], columns: int) -> tuple[list[float], list[int]]:
    """The step curve with at most two steps per column of ``columns`` over its span: up to the
    highest level that starts in the column, then to the column's last level (the curve as it
    looks at that width).

    >>> envelope([0, 1, 2, 3, 4], [2, 3, 1, 2, 0], 3)
    ([0.0, 2.0, 2.0, 4.0, 4.0], [2, 3, 1, 2, 0])
    """
    if len(times) <= columns:
        return list(times), list(busy)
    end = times[-1] or 1.0
    levels: dict[int, list[int]] = {}
    for time, level in zip(times, busy):
        levels.setdefault(min(int(time / end * (columns - 1) + 0.5), columns - 1), []).append(level)
    xs, ys = [], []
    for column in sorted(levels):
        peak, last = max(levels[column]), levels[column][-1]
        for level in (peak, last) if last != peak else (peak,):
            xs.append(column * end / (columns - 1))
            ys.append(level)
    return xs, ys


def mean_busy(times: Sequence[float], busy: Sequence[int]) -> float:
    """The time-average of a step curve ``busy`` (each level holds until the next time).

    >>> mean_busy([0, 1, 3], [2, 1, 0])
    1.3333333333333333
    """
    span = times[-1] - times[0] if len(times) > 1 else 0
    if span <= 0:
        return 0.0
    return sum(level * (later - now) for now, later, level in zip(times, times[1:], busy)) / span


def utilization(times: Sequence[float], busy: Sequence[int], available: int) -> str:
    """The cores busy over time as a step curve, against the cores available (dashed)."""
    if not times:
        return '<p class="empty">No finished attempts yet.</p>'
    xs, ys = envelope(times, busy, PLOT)
    end, high = xs[-1] or 1.0, max(max(ys), available, 1)
    levels = ticks(high, 5, whole=True)
    top, height = TOP, 260
    bottom = top + height

    def y(level: float) -> float:
        return bottom - height * level / levels[-1]

    parts = _x_axis(top, bottom, end, "seconds since the first start")
    parts += [f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{WIDTH - RIGHT}" y2="{y(v):.1f}" stroke="#eee"/>'
              f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{_label(v)}</text>' for v in levels]
    steps = [f"M{LEFT + PLOT * xs[0] / end:.2f},{y(ys[0]):.2f}"]
    for time, level in zip(xs[1:], ys[1:]):
        steps.append(f"H{LEFT + PLOT * time / end:.2f}V{y(level):.2f}")
    parts.append(f'<path d="{"".join(steps)}" fill="none" stroke="{COLOURS["interrupted"]}" stroke-width="1.6"/>')
    legend = [("cores busy", COLOURS["interrupted"])]
    if available:
        parts.append(f'<line x1="{LEFT}" y1="{y(available):.1f}" x2="{WIDTH - RIGHT}" y2="{y(available):.1f}" '
                     'stroke="#7f7f7f" stroke-dasharray="6 4"/>')
        legend.append((f"{available} cores available", "#7f7f7f"))
    parts.append(_legend(legend))
    mean = mean_busy(times, busy)
    share = f", {100 * mean / available:.0f}% of {available}" if available else ""
    caption = f"cores busy: {mean:.2f} on average over {seconds(times[-1] - times[0])}{share}; at most {max(busy)}"
    return _svg(bottom + BOTTOM, "utilization: cores busy over time", parts) + f'<p class="caption">{esc(caption)}</p>'

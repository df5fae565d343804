"""The dashboard's pages as HTML bodies: the overview (the live view), one run, the charts."""
from __future__ import annotations

import json
from typing import Any

from ensemble.store import Store
from ensemble.watch.dashboard import svg
from ensemble.watch.dashboard.layout import STATES, badge, cell, esc, pre, run_link, seconds, table, when
from ensemble.watch.plots import timeline_data, utilization_data

#: Segments of the progress bar, in order, and the width of its SVG.
BAR_ORDER, BAR_WIDTH = ("success", "failure", "aborted", "killed", "running", "waiting"), 1000


def shown(status: dict[str, Any]) -> dict[str, Any]:
    """The texts of the live view, as the overview shows them and ``/api/status`` sends them."""
    rate, eta = status["rate"], status["eta"]
    total = status["counts"]["total"]
    left = status["counts"]["waiting"] + status["counts"]["running"]
    return {"progress": f"{status['completed']} of {total} runs completed ({status['percent']:.1f}%)",
            "rate": "" if rate is None else f"{rate:.3g} runs/s",
            "eta": ("done" if not left else "" if eta is None else f"ETA {seconds(eta)}"),
            "managers": f"{status['managers']} manager(s) executing",
            "elapsed": [seconds(r["elapsed"]) for r in status["running"]]}


def bar_segments(counts: dict[str, int]) -> list[tuple[str, float, float]]:
    """``(state, x, width)`` of each progress bar segment, out of :data:`BAR_WIDTH`.

    >>> counts = {"success": 3, "failure": 0, "aborted": 0, "killed": 0, "running": 1, "waiting": 0, "total": 4}
    >>> bar_segments(counts)[:2], bar_segments(counts)[4]
    ([('success', 0.0, 750.0), ('failure', 750.0, 0.0)], ('running', 750.0, 250.0))
    """
    out, x = [], 0.0
    for state in BAR_ORDER:
        width = BAR_WIDTH * counts[state] / counts["total"] if counts["total"] else 0.0
        out.append((state, x, width))
        x += width
    return out


def _running_rows(status: dict[str, Any], texts: dict[str, Any]) -> list[list[str]]:
    return [[run_link(r["run_id"]), esc(r["step"]), esc(r["attempt"]), esc(r["host"]), esc(elapsed)]
            for r, elapsed in zip(status["running"], texts["elapsed"])]


def _failures(data: dict[str, Any]) -> str:
    if not data["failed"]:
        return ""
    items = "".join(f"<li>run {run_link(f['run_id'])}: {esc(f['message'])}" + (pre(f["tail"]) if f["stderr"] else "")
                    + "</li>" for f in data["failures"])
    return (f'<section id=failures><h2>Last failures</h2><p>{data["failed"]} run(s) failed or were aborted; '
            f'the last {len(data["failures"])}, with the end of their last attempt\'s stderr:</p><ul>{items}</ul>'
            "</section>")


def overview(data: dict[str, Any]) -> str:
    """The live view: counts, progress bar, rate and ETA, running runs; then the last failures."""
    texts = shown(data)
    cards = "".join(f'<div class="card s-{s}"><span class=n data-count="{s}">{data["counts"][s]}</span>'
                    f"<span class=label>{s}</span></div>" for s in (*STATES, "total"))
    segments = "".join(f'<rect id="bar-{s}" class="s-{s}" x="{x:.2f}" y="0" width="{w:.2f}" height="18"/>'
                       for s, x, w in bar_segments(data["counts"]))
    line = " · ".join(f'<span id="{k}">{esc(texts[k])}</span>' for k in ("progress", "rate", "eta", "managers"))
    running = table(["run", "step", "attempt", "host", "elapsed"], _running_rows(data, texts), ' id="running"')
    return (f'<section id=live><div class=cards>{cards}</div>'
            f'<svg class=progress viewBox="0 0 {BAR_WIDTH} 18" preserveAspectRatio="none" role="img" '
            f'aria-label="progress">{segments}</svg><p class=line>{line}</p>'
            f'<h2>Running</h2>{running}<p class=note>Updated every 2 s; last update <span id=updated>now</span>.</p>'
            f"</section>{_failures(data)}")


def _steps(steps: list[dict[str, Any]]) -> str:
    rows = [[esc(k), esc(" ".join(s["args"])), esc(s["tasks"]), esc(s["cores_per_task"]), esc(s["gpus_per_task"]),
             esc(seconds(60 * s["timeout"]) if s["timeout"] else "none"), esc(s["cwd"]), esc(s["batch_script"])]
            for k, s in enumerate(steps)]
    return table(["step", "command", "tasks", "cores/task", "GPUs/task", "timeout", "cwd", "batch script"], rows)


def _attempts(attempts: list[dict[str, Any]]) -> str:
    rows = [[esc(a["step"]), esc(a["attempt"]), badge(a["outcome"] or "running"),
             esc(a["exit_code"] if a["signal"] is None else f"signal {a['signal']}"), esc(a["host"]),
             esc(when(a["start"])), esc(seconds(None if a["end"] is None else a["end"] - a["start"])),
             esc(a["job"]), f"<code>{esc(' '.join(a['command']))}</code>"] for a in attempts]
    return table(["step", "attempt", "outcome", "exit", "host", "start", "seconds", "job", "command"], rows,
                 ' id="attempts"')


def _logs(attempts: list[dict[str, Any]]) -> str:
    parts = []
    for a in reversed(attempts):
        for stream, log in a["logs"].items():
            parts.append(f"<h3>step {a['step']}, attempt {a['attempt']}: {stream} <code>{esc(log['path'])}</code></h3>"
                         + pre(log["tail"]))
    return "".join(parts) or '<p class="empty">No log files.</p>'


def _mapping(values: Any) -> str:
    if not isinstance(values, dict):
        return pre([json.dumps(values, indent=1)]) if values is not None else '<p class="empty">none</p>'
    return table(["key", "value"], [[esc(k), esc(cell(v))] for k, v in values.items()], " class=kv")


def run(detail: dict[str, Any], last_id: int) -> str:
    """One run: state, sample, result, steps, attempts and the tails of their logs."""
    facts = [("state", badge(detail["state"])), ("message", esc(detail["message"])), ("step", esc(detail["step"])),
             ("restarts", esc(detail["restarts"])), ("run directory", f"<code>{esc(detail['run_dir'])}</code>"),
             ("manager", esc(detail["claimed_by"]))]
    here = detail["id"]
    around = " ".join(f'<a href="/run/{n}">{label}</a>' for n, label in ((here - 1, "‹ run " + str(here - 1)),
                      (here + 1, "run " + str(here + 1) + " ›")) if 1 <= n <= last_id)
    return (f"<p class=around>{around}</p><dl>{''.join(f'<dt>{k}</dt><dd>{v}</dd>' for k, v in facts)}</dl>"
            f"<h2>Sample</h2>{_mapping(detail['sample'])}<h2>Result</h2>{_mapping(detail['result'])}"
            f"<h2>Steps</h2>{_steps(detail['steps'])}<h2>Attempts</h2>{_attempts(detail['attempts'])}"
            f"<h2>Logs</h2><p class=note>The last lines of the latest attempts' output.</p>{_logs(detail['attempts'])}")


class ChartRecords:
    """What :mod:`ensemble.watch.plots`' data functions read, read once and only what they use."""

    def __init__(self, store: Store) -> None:
        self._attempts = store.attempt_spans()
        self._events = store.events(kind="manager_started")

    def attempts(self) -> list[dict[str, Any]]:
        return self._attempts

    def events(self) -> list[dict[str, Any]]:
        return self._events


def charts(store: Store) -> str:
    """The timeline of attempts over cores and the utilization curve."""
    records = ChartRecords(store)
    return (f"<h2>Timeline</h2>{svg.timeline(timeline_data(records))}"
            f"<h2>Utilization</h2>{svg.utilization(*utilization_data(records))}")

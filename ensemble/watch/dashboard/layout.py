"""The frame of every dashboard page and the small pieces they share.  Every text that comes
from the store, a sample, a result or a log goes through :func:`esc`."""
from __future__ import annotations

import html
import json
import time
from collections.abc import Iterable, Sequence
from typing import Any

NAV = (("/", "overview"), ("/runs", "runs"), ("/charts", "charts"))
#: The run states in the order the dashboard lists them.
STATES = ("waiting", "running", "success", "failure", "aborted", "killed")


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def seconds(value: float | None) -> str:
    """A duration for people: ``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``2 h 07 min``.

    >>> [seconds(v) for v in (0.42, 12.34, 245, 7620, None)]
    ['0.42 s', '12.3 s', '4 min 05 s', '2 h 07 min', '']
    """
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} s"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def when(epoch: float | None) -> str:
    """A time stamp in the server's local time."""
    return "" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def cell(value: Any) -> str:
    """A sample or result value as table text: strings as they are, the rest as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], attrs: str = "") -> str:
    """A table of already escaped cells."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def badge(state: str) -> str:
    return f'<span class="badge s-{esc(state)}">{esc(state)}</span>'


def run_link(run_id: int) -> str:
    return f'<a href="/run/{int(run_id)}">{int(run_id)}</a>'


def pre(lines: Sequence[str]) -> str:
    return f"<pre>{esc(chr(10).join(lines))}</pre>" if lines else '<p class="empty">(empty)</p>'


def page(title: str, body: str, setup_dir: str, active: str = "") -> bytes:
    """A whole HTML page around ``body`` (escaped by its maker), with the navigation."""
    nav = "".join(f'<a href="{href}"{" class=active" if name == active else ""}>{name}</a>' for href, name in NAV)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            f'<title>{esc(title)} · ensemble</title><link rel=icon href="data:,"><link rel=stylesheet href="/style.css">'
            '<script src="/app.js" defer></script></head><body>'
            f'<header><strong>ensemble</strong><nav>{nav}</nav><span class=setup title="setup directory">'
            f"{esc(setup_dir)}</span></header><main><h1>{esc(title)}</h1>{body}</main></body></html>").encode()

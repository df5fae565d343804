"""The table of runs: sorted, filtered and paged on the server from the query string
(``sort``, ``desc``, ``state``, ``col``/``op``/``val``, ``page``, ``per``), one page per
request, so a table of a million runs sends one page of rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ensemble.store import Store
from ensemble.store.runs import OPERATORS, RunPage
from ensemble.watch.dashboard.data import state_of
from ensemble.watch.dashboard.layout import STATES, badge, cell, esc, run_link, seconds, table

PER_PAGE, MAX_PER_PAGE = 100, 500
#: Runs whose samples and results name the columns (ensembles rarely change keys later).
SCANNED = 500


@dataclass(frozen=True)
class Column:
    """A column of the table: ``name`` in the query string (``sample.x`` for a sample label,
    ``result.y`` for a result key), its heading, and the store's field and key."""

    name: str
    heading: str
    field: str
    key: str | None = None

    def value(self, row: dict[str, Any]) -> str:
        """The escaped cell of ``row`` in this column."""
        if self.field == "sample":
            return esc(cell(row["sample"].get(self.key)))
        if self.field == "result":
            result = row["result"]
            return esc(cell(result.get(self.key) if isinstance(result, dict) else result if not self.key else None))
        if self.field == "status":
            return badge(state_of(row["status"], row["claimed_by"]))
        if self.field == "id":
            return run_link(row["id"])
        if self.field == "runtime":
            return esc(seconds(row["runtime"]))
        return esc(row[self.field])


def _keys(values: list[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, dict):
            seen.update(dict.fromkeys(str(k) for k in value))
    return [key for key in seen if '"' not in key]


def columns(store: Store) -> list[Column]:
    """Id, status, the sample labels, the result keys (or one ``result``), restarts, attempts and runtime."""
    samples, results = store.first_samples_and_results(SCANNED)
    out = [Column("id", "run", "id"), Column("status", "status", "status")]
    out += [Column(f"sample.{key}", key, "sample", key) for key in _keys(samples)]
    out += [Column(f"result.{key}", key, "result", key) for key in _keys(results)]
    if any(not isinstance(r, dict) for r in results):
        out.append(Column("result", "result", "result", ""))
    return out + [Column("restarts", "restarts", "restarts"), Column("attempts", "attempts", "attempts"),
                  Column("runtime", "runtime", "runtime")]


def _int(text: str | None, default: int, low: int, high: int) -> int:
    try:
        return min(max(int(text or default), low), high)
    except ValueError:
        return default


def _number(text: str) -> str | float:
    try:
        return float(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class Query:
    """The table's query string, checked: unknown columns, states and operators are dropped."""

    params: dict[str, str]
    page: RunPage
    number: int

    @classmethod
    def parse(cls, raw: dict[str, list[str]], cols: list[Column]) -> "Query":
        by_name = {c.name: c for c in cols}
        first = {key: values[0] for key, values in raw.items() if values}
        sort = by_name.get(first.get("sort", ""), cols[0])
        states = tuple(s for s in raw.get("state", []) if s in STATES)
        col, op, val = by_name.get(first.get("col", "")), first.get("op", "="), first.get("val", "")
        value = val if op == "~" else _number(val)
        where = (col.field, col.key, op, value) if col and op in OPERATORS and val else None
        per = _int(first.get("per"), PER_PAGE, 1, MAX_PER_PAGE)
        number = _int(first.get("page"), 1, 1, 10 ** 9)
        params = {"sort": sort.name, "desc": "1" if first.get("desc") == "1" else "",
                  "col": col.name if where else "", "op": op if where else "", "val": val if where else "",
                  "per": str(per) if per != PER_PAGE else ""}
        page = RunPage(states=states, where=where, order=(sort.field, sort.key), descending=bool(params["desc"]),
                       limit=per, offset=(number - 1) * per)
        return cls(params, page, number)

    def link(self, **changes: str | int) -> str:
        """The table's URL with ``changes`` to the query string (empty values left out)."""
        params = {**self.params, "page": str(self.number), **{k: str(v) for k, v in changes.items()}}
        pairs = [(k, v) for k, v in params.items() if v and not (k == "page" and v == "1")]
        pairs += [("state", s) for s in self.page.states]
        return "/runs" + ("?" + urlencode(pairs) if pairs else "")


def _heading(column: Column, query: Query) -> str:
    active = query.params["sort"] == column.name
    desc = "1" if active and not query.params["desc"] else ""
    arrow = (" ▼" if query.params["desc"] else " ▲") if active else ""
    group = f' class="{column.field}"' if column.field in ("sample", "result") else ""
    return f'<a{group} href="{esc(query.link(sort=column.name, desc=desc, page=1))}">{esc(column.heading)}{arrow}</a>'


def _form(query: Query, cols: list[Column]) -> str:
    states = "".join(f'<label><input type=checkbox name=state value="{s}"{" checked" if s in query.page.states else ""}>'
                     f"{s}</label>" for s in STATES)
    options = "".join(f'<option value="{esc(c.name)}"{" selected" if c.name == query.params["col"] else ""}>'
                      f"{esc(c.heading)}</option>" for c in cols if c.field != "status")
    ops = "".join(f'<option{" selected" if o == query.params["op"] else ""}>{esc(o)}</option>' for o in OPERATORS)
    hidden = "".join(f'<input type=hidden name="{k}" value="{esc(query.params[k])}">' for k in ("sort", "desc", "per")
                     if query.params[k])
    return (f'<form class=filter method=get action="/runs">{hidden}<fieldset><legend>state</legend>{states}</fieldset>'
            f'<fieldset><legend>where</legend><select name=col>{options}</select><select name=op>{ops}</select>'
            f'<input name=val value="{esc(query.params["val"])}" placeholder="value (~: contains)">'
            '</fieldset><button>apply</button> <a href="/runs">reset</a></form>')


def _pager(query: Query, total: int) -> str:
    per = query.page.limit
    last = max(1, -(-total // per))
    links = [f'<a href="{esc(query.link(page=n))}">{label}</a>' for n, label in
             ((1, "« first"), (query.number - 1, "‹ previous")) if query.number > 1]
    links += [f'<a href="{esc(query.link(page=n))}">{label}</a>' for n, label in
              ((query.number + 1, "next ›"), (last, "last »")) if query.number < last]
    offset = query.page.offset
    shown = f"runs {offset + 1}–{min(offset + per, total)} of {total}" if offset < total else f"none of {total} runs here"
    return f'<p class=pager><span id=rows>{shown}</span> (page {query.number} of {last}) {" ".join(links)}</p>'


def runs_table(store: Store, raw: dict[str, list[str]]) -> str:
    """The body of the runs page for the query string ``raw``."""
    cols = columns(store)
    query = Query.parse(raw, cols)
    total, rows = store.runs_page(query.page)
    body = table([_heading(c, query) for c in cols], ([c.value(r) for c in cols] for r in rows), ' id="runs"')
    return _form(query, cols) + _pager(query, total) + (body if rows else '<p class="empty">No runs match.</p>')

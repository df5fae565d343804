"""The dashboard's style sheet and its one script, served from memory (``/style.css``,
``/app.js``): the pages load nothing else, so they work without a network and under a strict
Content-Security-Policy (no inline script or style)."""

CSS = """
:root { --success: #2ca02c; --failure: #d62728; --aborted: #9467bd; --killed: #7f7f7f; --running: #1f77b4;
        --waiting: #c7c7c7; --total: #333; }
body { font-family: system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1.2em; background: #263238; color: #eee; }
header nav a { color: #cfd8dc; margin-right: 1em; text-decoration: none; }
header nav a.active, header nav a:hover { color: #fff; text-decoration: underline; }
header .setup { margin-left: auto; font-family: monospace; font-size: .85em; color: #b0bec5; }
main { padding: .5em 1.2em 2em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.4em; } h3 { font-size: .95em; margin-bottom: .2em; }
.cards { display: flex; flex-wrap: wrap; gap: .6em; }
.card { background: #fff; border: 1px solid #ddd; border-top: 4px solid var(--total); border-radius: 4px;
        padding: .4em .9em; min-width: 6em; }
.card .n { display: block; font-size: 1.6em; font-weight: 600; } .card .label { color: #666; font-size: .85em; }
.card.s-success { border-top-color: var(--success); } .card.s-failure { border-top-color: var(--failure); }
.card.s-aborted { border-top-color: var(--aborted); } .card.s-killed { border-top-color: var(--killed); }
.card.s-running { border-top-color: var(--running); } .card.s-waiting { border-top-color: var(--waiting); }
svg.progress { width: 100%; height: 18px; margin-top: 1em; background: #eee; border-radius: 3px; }
rect.s-success { fill: var(--success); } rect.s-failure { fill: var(--failure); } rect.s-aborted { fill: var(--aborted); }
rect.s-killed { fill: var(--killed); } rect.s-running { fill: var(--running); } rect.s-waiting { fill: var(--waiting); }
.line { font-size: 1.05em; } .note, .caption, .empty { color: #777; font-size: .85em; }
table { border-collapse: collapse; background: #fff; font-size: .9em; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #eceff1; } th a { color: inherit; } th a.sample { color: #0d47a1; } th a.result { color: #1b5e20; }
td code, h3 code { font-size: .85em; }
.badge { padding: .05em .5em; border-radius: 3px; color: #fff; background: #555; font-size: .85em; }
.badge.s-success { background: var(--success); } .badge.s-failure { background: var(--failure); }
.badge.s-aborted { background: var(--aborted); } .badge.s-killed { background: var(--killed); }
.badge.s-running { background: var(--running); } .badge.s-waiting { background: #9e9e9e; }
.badge.s-timeout { background: #ff7f0e; } .badge.s-interrupted { background: var(--running); }
.badge.s-launch_error { background: #000; }
pre { background: #263238; color: #eceff1; padding: .5em .8em; overflow-x: auto; font-size: .85em; max-width: 100em; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; } dt { color: #666; } dd { margin: 0; }
form.filter { display: flex; flex-wrap: wrap; gap: .8em; align-items: end; margin-bottom: .6em; }
fieldset { border: 1px solid #ddd; padding: .2em .6em; } fieldset label { margin-right: .6em; }
.pager a { margin-left: .6em; }
svg.chart { background: #fff; border: 1px solid #ddd; max-width: 100%; height: auto; }
"""

JS = """
"use strict";
// The overview polls /api/status every 2 s and updates its counts, bar, texts and running runs.
(function () {
  if (!document.getElementById("live")) return;
  function setText(id, text) { const e = document.getElementById(id); if (e) e.textContent = text; }
  function update(data) {
    for (const [state, count] of Object.entries(data.counts)) {
      for (const e of document.querySelectorAll('[data-count="' + state + '"]')) e.textContent = String(count);
    }
    for (const [state, x, width] of data.bar) {
      const rect = document.getElementById("bar-" + state);
      if (rect) { rect.setAttribute("x", String(x)); rect.setAttribute("width", String(width)); }
    }
    for (const key of ["progress", "rate", "eta", "managers"]) setText(key, data.text[key]);
    const body = document.querySelector("#running tbody");
    body.replaceChildren(...data.running.map(function (run, k) {
      const row = document.createElement("tr");
      const link = document.createElement("a");
      link.href = "/run/" + run.run_id;
      link.textContent = String(run.run_id);
      const cells = [link, run.step, run.attempt, run.host, data.text.elapsed[k]];
      for (const value of cells) {
        const td = document.createElement("td");
        if (value instanceof Node) td.appendChild(value); else td.textContent = String(value);
        row.appendChild(td);
      }
      return row;
    }));
    setText("updated", new Date().toLocaleTimeString());
  }
  function poll() {
    fetch("/api/status", {cache: "no-store", credentials: "same-origin"})
      .then(function (response) { if (!response.ok) throw new Error(response.status); return response.json(); })
      .then(update)
      .catch(function (error) { setText("updated", "failed (" + error.message + ")"); })
      .finally(function () { setTimeout(poll, 2000); });
  }
  setTimeout(poll, 2000);
})();
"""

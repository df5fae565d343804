"""``ensemble dashboard`` over plain HTTP: the token, read-only GET, no file by its path, the
pages' data from real executed ensembles, server-side sorting, filtering and paging."""
from __future__ import annotations

import doctest
import hashlib
import http.cookiejar
import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from dashboard_helpers import FAILING, executed, request, serving
from engine_helpers import DEADLINE, create, execute, run, sh

from ensemble.store import Store
from ensemble.store.runs import RunPage
from ensemble.watch.dashboard import data, layout, pages, svg

RUN_LINK = re.compile(r'<a href="/run/(\d+)">\1</a>')


def runs_column(body: str) -> list[int]:
    """The run ids of the runs table, in order (none without a table)."""
    table = body.partition('<table id="runs">')[2].split("</table>", 1)[0]
    return [int(m) for m in RUN_LINK.findall(table)]


@pytest.mark.parametrize("module", [data, layout, pages, svg])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_every_request_without_the_token_is_forbidden(edir):
    ens = executed()
    with serving(ens.setup_dir) as server:
        for path in ("/", "/runs", "/run/1", "/charts", "/api/status", "/style.css", "/app.js", "/nothing"):
            assert request(server, path, cookie=None)[0] == 403, path
            assert request(server, path, cookie="wrong")[0] == 403, path
            assert request(server, path + "?token=wrong", cookie=None)[0] == 403, path
        status, headers, _ = request(server, "/runs?sort=id&token=" + server.token, cookie=None)
        assert status == 303 and headers["location"] == "/runs?sort=id"
        assert headers["set-cookie"] == f"{server.cookie}={server.token}; HttpOnly; SameSite=Strict; Path=/"
        status, headers, body = request(server, "/")
        assert status == 200 and "default-src 'none'" in headers["content-security-policy"]
        assert headers["referrer-policy"] == "no-referrer" and headers["cache-control"] == "no-store"


def test_no_path_reaches_a_file(edir):
    ens = executed()
    (edir / "secret.txt").write_text("top secret\n")
    with serving(ens.setup_dir) as server:
        for path in ("/../secret.txt", "/run/1/../../secret.txt", "/%2e%2e/%2e%2e/etc/passwd", "/run/..%2f..%2fetc",
                     "/ensemble.db", "/logs/manager.log", "/runs/1/ensemble.step0.attempt1.out", "//etc/passwd",
                     "/run/1/ensemble.step0.attempt1.out", "/style.css/../../secret.txt", "/run/-1", "/run/1.0"):
            status, _, body = request(server, path)
            assert status == 404, path
            assert "top secret" not in body and "root:" not in body


def test_only_get_and_the_database_is_left_as_it_was(edir):
    ens = executed()
    files = [ens.setup_dir / name for name in ("ensemble.db", "ensemble.db-wal") if (ens.setup_dir / name).exists()]
    before = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    with serving(ens.setup_dir) as server:
        for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD"):
            assert request(server, "/", method=method)[0] == 501, method
        for path in ("/", "/runs?sort=sample.x&desc=1", "/run/4", "/charts", "/api/status"):
            assert request(server, path)[0] == 200, path
    assert [hashlib.sha256(f.read_bytes()).hexdigest() for f in files] == before


def test_status_api_counts_an_executed_ensemble(edir):
    ens = executed()
    with serving(ens.setup_dir) as server:
        status, headers, body = request(server, "/api/status")
    got = json.loads(body)
    assert status == 200 and headers["content-type"] == "application/json"
    assert got["counts"] == {"waiting": 0, "running": 0, "success": 5, "failure": 1, "aborted": 0, "killed": 0,
                             "total": 6}
    assert got["completed"] == 6 and got["percent"] == 100.0 and got["running"] == [] and got["managers"] == 0
    assert got["text"]["progress"] == "6 of 6 runs completed (100.0%)" and got["text"]["eta"] == "done"
    assert [s for s, _, w in got["bar"] if w] == ["success", "failure"]


def test_overview_shows_counts_and_the_last_failure_escaped(edir):
    ens = executed()
    with serving(ens.setup_dir) as server:
        body = request(server, "/")[2]
    assert '<span class=n data-count="success">5</span>' in body
    assert '<span class=n data-count="failure">1</span>' in body
    assert f'run <a href="/run/{FAILING}">{FAILING}</a>: step 0 exited with 3' in body
    assert f"boom &lt;b&gt;{FAILING}&lt;/b&gt;" in body and "<b>4</b>" not in body


def test_run_page_shows_sample_steps_attempts_and_log_tails(edir):
    ens = executed()
    with serving(ens.setup_dir) as server:
        status, _, body = request(server, f"/run/{FAILING}")
        assert request(server, "/run/7")[0] == 404 and request(server, "/run/0")[0] == 404
    assert status == 200 and "<h1>Run 4</h1>" in body
    attempts = body.split('<table id="attempts">', 1)[1].split("</table>", 1)[0]
    assert attempts.count("<tr>") == 2 and '<span class="badge s-failure">failure</span>' in attempts
    assert "<td>3</td>" in attempts and "echo &#x27;boom &lt;b&gt;4&lt;/b&gt;&#x27; &gt;&amp;2" in attempts
    assert "step 0, attempt 1: stdout" in body and "<pre>out 4</pre>" in body
    assert "<pre>boom &lt;b&gt;4&lt;/b&gt;</pre>" in body


def test_run_page_of_the_combined_log_layout(edir):
    ens = create([run(1, sh("echo to-out; echo to-err >&2"))])
    execute(ens, log_layout="combined")
    with serving(ens.setup_dir) as server:
        body = request(server, "/run/1")[2]
    assert "step 0, attempt 1: log <code>" in body and "<pre>to-out\nto-err</pre>" in body
    assert ": stdout <code>" not in body


def test_table_sorts_filters_and_pages_on_the_server(edir):
    ens = create([run(x, sh(f"echo '{{\"y\": {(x * 7) % 12}}}' > ensemble_result.json")) for x in range(1, 13)])
    execute(ens, cores=2)
    with serving(ens.setup_dir) as server:
        def ids(query: str) -> list[int]:
            status, _, body = request(server, "/runs" + query)
            assert status == 200, query
            return runs_column(body)

        assert ids("") == list(range(1, 13))
        assert ids("?sort=sample.x&desc=1&per=5") == [12, 11, 10, 9, 8]
        assert ids("?sort=sample.x&desc=1&per=5&page=3") == [2, 1]
        assert ids("?sort=result.y") == sorted(range(1, 13), key=lambda x: ((x * 7) % 12, x))
        assert ids("?col=result.y&op=%3E%3D&val=9") == [x for x in range(1, 13) if (x * 7) % 12 >= 9]
        assert ids("?col=sample.x&op=~&val=1") == [1, 10, 11, 12]
        assert ids("?state=success&state=failure&sort=nonsense&per=junk") == list(range(1, 13))
        assert ids("?state=failure") == []
        body = request(server, "/runs?per=5&page=2&sort=sample.x")[2]
    assert "runs 6–10 of 12" in body and 'href="/runs?sort=sample.x&amp;per=5&amp;page=3"' in body


def test_a_large_ensemble_sends_one_page(edir):
    ens = create([run(x, sh("true")) for x in range(1, 1201)])
    with serving(ens.setup_dir) as server:
        body = request(server, "/runs")[2]
        last = request(server, "/runs?page=12")[2]
        overview = request(server, "/")[2]
        charts = request(server, "/charts")[2]
    assert runs_column(body) == list(range(1, 101)) and "runs 1–100 of 1200" in body
    assert runs_column(last) == list(range(1101, 1201))
    assert '<span class=n data-count="waiting">1200</span>' in overview
    assert charts.count("No finished attempts yet.") == 2


def test_store_pages_runs_by_state_and_json_fields(edir):
    ens = executed()
    store = Store.open(ens.setup_dir, readonly=True)
    total, rows = store.runs_page(RunPage(states=("failure",)))
    assert total == 1 and rows[0]["id"] == FAILING and rows[0]["attempts"] == 1 and rows[0]["runtime"] >= 0
    total, rows = store.runs_page(RunPage(order=("result", "y"), descending=True, limit=2, offset=1))
    assert total == 6 and [r["id"] for r in rows] == [5, 3]
    assert store.runs_page(RunPage(where=("sample", "x", ">", 4)))[0] == 2
    for bad in ({"states": ("queued",)}, {"order": ("sample; DROP TABLE runs", None)},
                {"where": ("id", None, "OR 1=1 --", 1)}, {"order": ("sample", 'a"b')}):
        with pytest.raises(ValueError):
            RunPage(**bad)


def test_charts_draw_every_attempt_core_and_the_utilization(edir):
    ens = executed()
    with serving(ens.setup_dir) as server:
        body = request(server, "/charts")[2]
    timeline = body.split("<svg", 2)[1]
    assert len(re.findall(r'<a href="/run/\d+"><rect', timeline)) == 6
    assert timeline.count('fill="#d62728"') == 2  # run 4's bar and the legend's
    assert "<title>run 4: failure," in timeline and "<path d=\"M" in body
    assert "timeline of 6 attempt-cores on 2 node:core lanes" in body and "2 cores available" in body


def test_estimate_rate_and_eta():
    assert data.estimate([0.0, 2.0, 4.0], 10, 4.0) == (0.5, 20.0)
    assert data.estimate([0.0, 2.0, 4.0], 10, 8.0) == (0.25, 40.0)  # nothing completed since 4 s: slower
    assert data.estimate([5.0, 5.0], 1, 5.0) == (None, None)


def test_cli_prints_the_url_serves_and_stops_on_ctrl_c(edir):
    ens = executed()
    process = subprocess.Popen([sys.executable, "-m", "ensemble", "--setup-dir", str(ens.setup_dir), "dashboard",
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()
        url = process.stdout.readline().strip()
        assert first == f"ensemble dashboard of {ens.setup_dir}\n"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{40,}", url), url
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        with browser.open(url, timeout=60) as response:  # the token, then the redirect with its cookie
            assert response.status == 200 and response.url == url.split("?")[0]
            assert "<h1>Overview</h1>" in response.read().decode()
    finally:
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=DEADLINE)
    assert process.returncode == 0, err
    assert out.splitlines()[-1] == "dashboard stopped" and err == ""


def test_cli_errors(edir, tmp_path):
    def dashboard(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ensemble", *argv], capture_output=True, text=True, timeout=60)

    done = dashboard("--setup-dir", str(tmp_path / "none"), "dashboard", "--port", "0")
    assert done.returncode == 2 and "no ensemble in" in done.stderr
    ens = executed(1)
    with serving(ens.setup_dir) as server:
        port = server.server_address[1]
        done = dashboard("--setup-dir", str(ens.setup_dir), "dashboard", "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip() == f"ensemble: error: --port: {port} is in use (--port 0 picks a free port)"
    done = dashboard("--setup-dir", str(ens.setup_dir), "dashboard", "--port", "70000")
    assert done.returncode == 2 and done.stderr.strip() == "ensemble: error: --port: expected 0 to 65535, got 70000"

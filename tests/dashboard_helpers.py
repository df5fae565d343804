"""Helpers for the dashboard tests: an ensemble with a failure, the server in a thread, raw
HTTP requests (sent as written: no client normalises their paths) and headless Chromium."""
from __future__ import annotations

import http.client
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from engine_helpers import create, execute, run, sh

from ensemble import Ensemble
from ensemble.watch.dashboard.server import DashboardServer

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
#: Runs 1..6; run 4 fails (exit 3, after a line on stderr), the others give the result {"y": x*x}.
FAILING = 4


def step(x: int) -> str:
    if x == FAILING:
        return f"echo 'out {x}'; echo 'boom <b>{x}</b>' >&2; exit 3"
    return f"echo 'out {x}'; echo 'err {x}' >&2; echo '{{\"y\": {x * x}}}' > ensemble_result.json"


def executed(count: int = 6) -> Ensemble:
    """An executed ensemble of ``count`` runs (samples ``{"x": k}``), run :data:`FAILING` failed."""
    ens = create([run(x, sh(step(x))) for x in range(1, count + 1)])
    execute(ens, cores=2)
    return ens


@contextmanager
def serving(setup_dir: str | os.PathLike) -> Iterator[DashboardServer]:
    """The dashboard of ``setup_dir`` on a free port of 127.0.0.1, served by a thread."""
    server = DashboardServer(Path(setup_dir), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def request(server: DashboardServer, path: str, cookie: str | None = "", method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """``(status, headers, body)`` of one request; ``cookie``: "" sends the valid cookie, None none."""
    host, port = server.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=60)
    sent = dict(headers or {})
    if cookie is not None:
        sent["Cookie"] = f"{server.cookie}={cookie or server.token}"
    try:
        conn.request(method, path, headers=sent)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode()
    finally:
        conn.close()


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot be skipped in CI: {reason}")
    pytest.skip(reason)


def chromium():
    """A headless Chromium driven by Selenium (skipped without one; failed under ``CI=true``)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ModuleNotFoundError:
        _skip_or_fail("selenium is not installed (pip install -e '.[dev]')")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _skip_or_fail("no Chromium (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    return driver

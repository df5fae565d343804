"""``ensemble dashboard`` in a real headless Chromium: the overview of an executed ensemble, a
run's row, a run page's attempts, sorting by a click, the 403 without the token, a screenshot,
and the overview following a detached manager by polling (waits are deadlines, never sleeps)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dashboard_helpers import FAILING, chromium, executed, serving
from engine_helpers import DEADLINE, create, run, sh, start_detached, wait_file, wait_manager_exit

from ensemble.watch.dashboard.server import DashboardServer

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    driver = chromium()
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def watching(browser, setup_dir: Path) -> Iterator[DashboardServer]:
    """The dashboard of ``setup_dir`` for ``browser`` (its cookies cleared); at the end, a check that
    the pages logged no error (a CSP violation, a failed poll, a script error), checked while
    the server still runs and before the browser leaves the page (which stops its polling)."""
    browser.delete_all_cookies()
    browser.get_log("browser")
    with serving(setup_dir) as server:
        yield server
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        browser.get("about:blank")
    assert errors == []


def wait_until(driver, condition, what: str):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, DEADLINE, poll_frequency=0.1).until(lambda d: condition(d))
    except TimeoutException:
        pytest.fail(f"timed out after {DEADLINE:.0f} s waiting for: {what}")


def text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def test_overview_runs_table_and_run_page(edir, browser, tmp_path):
    from selenium.webdriver.common.by import By

    ens = executed()
    with watching(browser, ens.setup_dir) as server:
        base = server.url.split("/?")[0]
        browser.get(server.url)
        assert browser.current_url == base + "/", "the token is traded for a cookie"
        assert {c["name"]: (c["httpOnly"], c["sameSite"]) for c in browser.get_cookies()} == {
            server.cookie: (True, "Strict")}
        counts = {s: text(browser, f'[data-count="{s}"]') for s in ("waiting", "running", "success", "failure", "total")}
        assert counts == {"waiting": "0", "running": "0", "success": "5", "failure": "1", "total": "6"}
        assert text(browser, "#progress") == "6 of 6 runs completed (100.0%)"
        assert f"boom <b>{FAILING}</b>" in text(browser, "#failures pre")
        shot = tmp_path / "overview.png"
        assert browser.save_screenshot(str(shot)) and shot.read_bytes()[:8] == PNG

        browser.find_element(By.LINK_TEXT, "runs").click()
        row = browser.find_element(By.XPATH, f'//table[@id="runs"]//tr[td/a[text()="{FAILING}"]]')
        assert [td.text for td in row.find_elements(By.TAG_NAME, "td")][:4] == [str(FAILING), "failure", "4", ""]
        browser.find_element(By.LINK_TEXT, "x").click()
        browser.find_element(By.LINK_TEXT, "x ▲").click()
        assert text(browser, '#runs tbody tr:first-child td:first-child') == "6"

        browser.find_element(By.XPATH, f'//table[@id="runs"]//a[text()="{FAILING}"]').click()
        assert text(browser, "h1") == f"Run {FAILING}"
        attempts = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
                    for tr in browser.find_elements(By.CSS_SELECTOR, "#attempts tbody tr")]
        assert [a[:4] for a in attempts] == [["0", "1", "failure", "3"]]
        assert f"echo 'boom <b>{FAILING}</b>' >&2" in attempts[0][-1]


def test_without_the_token_the_browser_gets_403(edir, browser):
    ens = executed(1)
    browser.delete_all_cookies()
    with serving(ens.setup_dir) as server:
        browser.get(server.url.split("?")[0] + "runs")
        assert text(browser, "body").startswith("403 forbidden")
        browser.get(server.url.replace("?token=", "?token=x"))
        assert text(browser, "body").startswith("403 forbidden")
        browser.get("about:blank")
    browser.get_log("browser")


def test_overview_follows_a_detached_manager(edir, browser):
    gate = edir / "gate"
    ens = create([run(x, sh(wait_file(gate))) for x in range(1, 4)])
    pid = start_detached(ens, cores=2)
    with watching(browser, ens.setup_dir) as server:
        browser.get(server.url)
        wait_until(browser, lambda d: text(d, '[data-count="running"]') == "2", "two runs shown running")
        assert text(browser, '[data-count="success"]') == "0"
        wait_until(browser, lambda d: len(d.find_elements("css selector", "#running tbody tr")) == 2, "two running rows")
        browser.execute_script("window.notReloaded = true;")
        gate.touch()
        wait_until(browser, lambda d: text(d, '[data-count="success"]') == "3", "the success count to reach 3")
        assert browser.execute_script("return window.notReloaded === true;"), "updated in place by polling"
        wait_until(browser, lambda d: text(d, "#progress") == "3 of 3 runs completed (100.0%)", "the progress line")
        assert text(browser, "#eta") == "done"
    wait_manager_exit(ens, pid)

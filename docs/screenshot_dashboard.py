"""Make ``docs/_static/dashboard.png``: the dashboard's overview of a real ensemble while it executes.

    python docs/screenshot_dashboard.py [OUTPUT]

24 runs of a small shell "solver" execute on two cores; runs 7 and 13 fail; runs 17-24 wait on a
gate file, so the picture shows runs running and waiting.  The screenshot is taken in headless
Chromium (``apt-get install chromium chromium-driver``, ``pip install selenium``) once 16 runs
have completed; then the gate opens and the ensemble finishes.
"""
from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from ensemble import CompositeRun, Ensemble, Step
from ensemble.watch.dashboard.server import DashboardServer

FAILING, GATED = (7, 13), range(17, 25)


def command(x: int, gate: Path) -> str:
    wait = f'while [ ! -e "{gate}" ]; do sleep 0.1; done; ' if x in GATED else ""
    if x in FAILING:
        return f"{wait}sleep 0.2; echo 'solver: mesh {x} did not converge after 200 iterations' >&2; exit 3"
    return f"{wait}sleep 0.{x % 4 + 2}; echo '{{\"energy\": {-x / 8:.3f}}}' > ensemble_result.json"


def main() -> None:
    output = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("_static") / "dashboard.png").resolve()
    work = Path(tempfile.mkdtemp(prefix="ensemble-dashboard-"))
    gate = work / "gate"
    runs = [CompositeRun({"mesh": x, "alpha": round(0.1 * (x % 5), 1)},
                         [Step(["sh", "-c", command(x, gate)], batch_script=False)]) for x in range(1, 25)]
    os.chdir(work)
    ens = Ensemble.create(runs=runs, setup_dir="study.ens")
    ens.execute_local(blocking=False, cores=2, timeout=5)
    server = DashboardServer(ens.setup_dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1100,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        while ens.progress()[0] < 16:
            time.sleep(0.2)
        driver.get(server.url)
        WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "updated").text != "now")
        driver.save_screenshot(str(output))
    finally:
        driver.quit()
        gate.touch()
    while ens.progress()[0] < 24:
        time.sleep(0.2)
    server.shutdown()
    print(f"wrote {output} (the ensemble is in {work})")


if __name__ == "__main__":
    main()

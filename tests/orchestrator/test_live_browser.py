"""The live view in a real browser: ``airmix run --live`` with headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, installed by ``scripts/test.sh`` when
run as root), then ``airmix view`` on the finished run from its files alone.

Skips, saying why, only where Chromium cannot be found (not root, no package)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import tomli_w

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="Debian chromium/chromium-driver not installed (scripts/install_browser.sh needs root)",
)
ROOT = Path(__file__).resolve().parents[2]
#: panels drawn from the training metrics and the engine's live records
RUN_PANELS = (
    "panel-accuracy",
    "panel-accuracy-uses",
    "panel-uses",
    "panel-links",
    "panel-spectrum",
    "panel-constellation",
    "panel-groups",
)
WAIT_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1700",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(driver, script: str, what: str, timeout_s: float = WAIT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rendered(driver, panels) -> list[str]:
    return [
        p for p in panels if driver.find_element("id", p).get_attribute("data-rendered") != "true"
    ]


def unrendered_after_wait(driver, panels) -> list[str]:
    """The panels still not rendered after waiting up to WAIT_S for all of them."""
    deadline = time.monotonic() + WAIT_S
    while (missing := rendered(driver, panels)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return missing


def open_view(driver, port: int, process: subprocess.Popen) -> None:
    """Load the page the live view ``process`` serves on ``port`` once it answers."""
    wait_http(f"http://127.0.0.1:{port}/api/snapshot", process)
    driver.get(f"http://127.0.0.1:{port}/")


def wait_http(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the run exited before its live view answered"
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"no answer from {url}")


def airmix(*args: str, output: bool) -> subprocess.Popen:
    """``airmix *args`` in the background from the repository (stdout and stderr
    captured as text when ``output``, else discarded)."""
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if output else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output else None,
        text=True,
    )


def test_live_run_in_chromium_then_view_of_the_finished_run(tmp_path):
    out = tmp_path / "runs"
    experiment = tmp_path / "live.toml"
    experiment.write_text(
        tomli_w.dumps(
            {
                "experiment": {"name": "live", "seed": 5, "rounds": 30, "out_dir": str(out)},
                "users": {"count": 4, "group_size": 2, "node_processes": 1},
                "attacks": {"enabled": ["label_inference"], "eavesdropper": False},
            }
        )
    )
    port = free_port()
    run = airmix("run", str(experiment), "--live", str(port), output=True)
    driver = browser()
    try:
        open_view(driver, port, run)
        wait_for(driver, "return document.getElementById('round').textContent !== '-'", "a round")
        first = int(driver.find_element("id", "round").text)
        # a later round's update arrives over the WebSocket while the page is open
        wait_for(
            driver,
            f"return Number(document.getElementById('round').textContent) > {first}",
            "the next round's update",
        )
        missing = unrendered_after_wait(driver, RUN_PANELS)
        assert not missing, f"panels never rendered during the run: {missing}"
        assert driver.find_element("id", "connection").text == "live"
        assert len(driver.find_elements("css selector", "#panel-links tbody tr")) == 4
        driver.save_screenshot(str(tmp_path / "live_run.png"))
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
    finally:
        if run.poll() is None:
            run.kill()
        driver.quit()
    assert (tmp_path / "live_run.png").stat().st_size > 10_000

    run_dir = next(out.iterdir())
    view_port = free_port()
    view = airmix("view", str(run_dir), "--port", str(view_port), output=False)
    driver = browser()
    try:
        open_view(driver, view_port, view)
        missing = unrendered_after_wait(driver, (*RUN_PANELS, "panel-privacy"))
        assert not missing, f"panels missing on the finished run's view: {missing}"
        assert driver.find_element("id", "run-status").text == "finished"
        assert driver.find_element("id", "round").text == "29"
        driver.save_screenshot(str(tmp_path / "view_finished.png"))
    finally:
        driver.quit()
        view.terminate()
        view.wait(timeout=10)

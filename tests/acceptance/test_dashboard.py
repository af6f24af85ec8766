"""The dashboard in a real browser: Debian's chromium driven by Playwright.

The boss and its workers are the real `shoal` commands; the browser logs in,
watches a run change without reloading, reads a failed task's log, retries
it, and cancels another run. Screenshots land in the test's folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import CHROMIUM, FLAGS
from tests.conftest import Procs, shoal, start_boss, start_worker, write
from tests.needs import needs

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = needs("Debian's chromium", Path(CHROMIUM).exists())


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with playwright.sync_playwright() as pw:
        # Playwright gives every launch a new, empty profile of its own.
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def served(tmp_path: Path, procs: Procs) -> dict[str, Any]:
    info = start_boss(procs, tmp_path)
    for i in range(2):
        start_worker(procs, tmp_path, info, f"w{i}", slots=2)
    return info


def login(page: Any, info: dict[str, Any]) -> None:
    page.goto(info["url"] + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=token]", "not-the-token")
    page.click("button[type=submit]")
    assert "not this boss's token" in page.content()
    page.fill("input[name=token]", info["token"])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Runs')")


def test_nothing_is_visible_without_the_token(served: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    for path in ("/", "/#/workers"):
        page.goto(served["url"] + path)
        assert "/login" in page.url and "Paste the boss's token" in page.content()
    response = page.goto(served["url"] + "/v1/runs")
    assert response.status == 401


def test_watch_progress_read_a_failed_log_retry_and_cancel(
    tmp_path: Path, served: dict[str, Any], browser: Any
) -> None:
    marker = tmp_path / "fixed"
    write(
        tmp_path / "work.yaml",
        f"""
name: work
tasks:
  - name: step-{{i}}
    matrix: {{i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]}}
    run: sleep 0.4; echo {{i}}
  - name: flaky
    after: ["step-*"]
    run: [echo checking the disk, test -e {marker} || (echo disk is full >&2; exit 5), echo fine]
""",
    )
    page = browser.new_page(viewport={"width": 1300, "height": 950})
    login(page, served)
    assert shoal("submit", "work.yaml", cwd=tmp_path).returncode == 0
    page.click("td a[href='#/run/1']")
    page.wait_for_selector("#tasks")
    page.evaluate("window.sameDocument = true")  # gone if the page reloads
    first = page.inner_text("#counts")
    page.wait_for_function(
        "t => document.querySelector('#counts').innerText !== t", arg=first, timeout=20000
    )
    page.screenshot(path=str(tmp_path / "progress.png"))
    page.wait_for_selector("h1 .badge.failed", timeout=30000)
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(tmp_path / "run-failed.png"))

    page.select_option("#state", "failed")
    page.wait_for_selector("#tasks a:has-text('flaky')")
    page.click("#tasks a:has-text('flaky')")
    page.wait_for_selector("#log")
    log = page.inner_text("#log")
    assert "checking the disk" in log and "disk is full" in log
    assert "exit code 5" in page.inner_text("main")
    page.screenshot(path=str(tmp_path / "failed-task.png"))

    marker.touch()
    page.click("a[href='#/run/1']")
    page.wait_for_selector("#retry:not([disabled])")
    page.click("#retry")
    page.wait_for_selector("h1 .badge.succeeded", timeout=30000)
    assert page.evaluate("window.sameDocument") is True
    assert shoal("tasks", "work", cwd=tmp_path).stdout.count("succeeded") == 17

    write(
        tmp_path / "long.yaml",
        "name: long\ntasks:\n  - name: nap-{i}\n    matrix: {i: [1, 2, 3]}\n    run: sleep 60\n",
    )
    shoal("submit", "long.yaml", cwd=tmp_path)
    page.goto(served["url"] + "/#/")
    page.click("td a[href='#/run/2']")
    page.wait_for_selector("#cancel:not([disabled])")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    page.wait_for_selector("h1 .badge.cancelled", timeout=15000)
    page.screenshot(path=str(tmp_path / "cancelled.png"))
    page.click("a:has-text('Workers')")
    page.wait_for_selector("td:has-text('w1')")
    page.screenshot(path=str(tmp_path / "workers.png"))

"""A task that prints far too much: its log keeps the head and the tail, and says so."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import CHROMIUM, FLAGS
from tests.conftest import Procs, shoal, shoal_json, start_boss, wait_for, write

# About 30 MB: the numbers 1 to 4,000,000, one a line.
LINES = 4_000_000
BIG = f"tasks:\n  - {{name: big, run: 'seq 1 {LINES}'}}\n"
LAST_THREE = f"{LINES - 2}\n{LINES - 1}\n{LINES}\n"


def stored_log(state: Path) -> bytes:
    [log] = (state / "data" / "logs").rglob("*.log")
    return log.read_bytes()


def test_shoal_run_with_a_log_cap_keeps_the_ends_of_a_30_mb_log(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", BIG)
    proc = shoal("run", "t.yaml", "-j", "1", "--log-cap", "1M", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    log = stored_log(tmp_path / ".shoal")
    assert len(log) <= 1024 * 1024 + 200
    assert log.startswith(b"1\n2\n3\n") and log.endswith(LAST_THREE.encode())
    [note] = [line for line in log.splitlines() if line.startswith(b"[... shoal cut ")]
    assert note.endswith(b" lines) from the middle of this log ...]")
    assert shoal_json("results", cwd=tmp_path) == {"big": LINES}
    # No boss runs now: shoal logs reads the datastore.
    tail = shoal("logs", "big", "--tail", "3", cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout == LAST_THREE
    bad = shoal("run", "t.yaml", "--log-cap", "lots", cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        "shoal: --log-cap: 'lots' is not a size: give bytes, or a number with K, M or G (8M)"
    )


@pytest.fixture
def big_log_on_a_boss(tmp_path: Path, procs: Procs) -> dict[str, Any]:
    """A boss whose worker (the default cap, 8 MiB) ran a task that printed 30 MB."""
    info = start_boss(procs, tmp_path)
    procs.start("worker", "--boss", info["url"], cwd=tmp_path, env={"SHOAL_TOKEN": info["token"]})
    write(tmp_path / "t.yaml", BIG)
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=120,
        what="the big task",
    )
    return info


def test_the_boss_serves_the_whole_capped_log_and_its_tail(
    tmp_path: Path, big_log_on_a_boss: dict[str, Any]
) -> None:
    stored = stored_log(tmp_path / ".shoal")
    assert 4 * 1024 * 1024 < len(stored) <= 8 * 1024 * 1024 + 200
    whole = shoal("logs", "big", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.encode() == stored  # past 4 MB, to the last line
    assert whole.stdout.startswith("1\n2\n") and whole.stdout.endswith(LAST_THREE)
    assert "[... shoal cut " in whole.stdout
    tail = shoal("logs", "big", "--tail", "3", cwd=tmp_path)
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout == LAST_THREE
    followed = shoal("logs", "big", "-f", "--tail", "3", cwd=tmp_path)
    assert followed.returncode == 0 and followed.stdout == LAST_THREE, followed.stderr
    # The route itself: a bad count is a 400 with one line, not a 500.
    url = f"{big_log_on_a_boss['url']}/v1/runs/latest/tasks/big/log?tail=abc"
    request = urllib.request.Request(
        url, headers={"Authorization": "Bearer " + big_log_on_a_boss["token"]}
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400
    assert json.loads(refused.value.read()) == {"error": "?tail= takes a whole number, not 'abc'"}


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def test_the_dashboard_shows_the_end_of_a_long_log(
    tmp_path: Path, big_log_on_a_boss: dict[str, Any], browser: Any
) -> None:
    info = big_log_on_a_boss
    page = browser.new_page(viewport={"width": 1300, "height": 950})
    page.goto(info["url"] + "/login")
    page.fill("input[name=token]", info["token"])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Runs')")
    page.goto(info["url"] + "/#/run/1/task/big")
    page.wait_for_selector("#log-note")
    shown = page.inner_text("#log")
    assert shown.rstrip("\n").endswith(LAST_THREE.rstrip("\n"))
    assert len(shown.strip("\n").splitlines()) == 200
    assert "The last 200 lines of this log (8.0 MiB in all)" in page.inner_text("#log-note")
    # The end is in view: the log is scrolled to its bottom.
    assert page.evaluate(
        "(() => { const p = document.querySelector('#log');"
        " return p.scrollTop > 0 && p.scrollTop + p.clientHeight >= p.scrollHeight - 2; })()"
    )
    page.screenshot(path=str(tmp_path / "long-log.png"))
    # From the start, page by page (the whole log is 8 MiB: the first page, and a link to the next).
    page.click("#whole-log")
    page.wait_for_function("!document.querySelector('#log-note')")
    whole = page.inner_text("#log")
    assert whole.startswith("1\n2\n3\n")
    assert "of 8.0 MiB shown" in page.inner_text("#logs")
    page.click(".more-log")
    page.wait_for_function(f"document.querySelector('#log').innerText.length > {len(whole)}")

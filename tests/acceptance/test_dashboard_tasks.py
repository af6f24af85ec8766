"""The dashboard's task and workers pages, and the page at a phone's width, in Chromium.

A task page links what a task ran after and what runs after it, lists the
files it was given from its dependencies, shows every attempt's whole log
(page by page), exit codes as signal names and its history in words; a
task can be retried or cancelled on its own, a worker drained or stopped;
the workers page shows each worker's CPU, memory and current tasks. The
page says "offline" while its boss is gone and catches up when it is back.
Screenshots (at 1280 and 700 pixels wide) land in each test's folder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chromium import CHROMIUM, FLAGS
from tests.conftest import (
    Procs,
    free_port,
    shoal,
    shoal_json,
    start_boss,
    start_worker,
    wait_for,
    write,
)
from tests.needs import needs

playwright = pytest.importorskip("playwright.sync_api")
pytestmark = needs("Debian's chromium", Path(CHROMIUM).exists())

WIDE = {"width": 1280, "height": 900}
NARROW = {"width": 700, "height": 900}


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


def logged_in(browser: Any, info: dict[str, Any], viewport: dict[str, int] = WIDE) -> Any:
    page = browser.new_page(viewport=viewport)
    page.goto(info["url"] + "/")
    page.fill("input[name=token]", info["token"])
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Runs')")
    return page


def task_state(cwd: Path, run: str, name: str) -> str:
    tasks = shoal_json("tasks", run, "--json", cwd=cwd)
    return str(next(t["state"] for t in tasks if t["name"] == name))


def open_task(page: Any, info: dict[str, Any], run: int, name: str) -> None:
    page.goto(f"{info['url']}/#/run/{run}/task/{name}")
    page.wait_for_selector(f"h1:has-text('{name}')")


def test_a_task_page_links_its_neighbours_inputs_every_log_and_says_what_happened(
    tmp_path: Path, procs: Procs, browser: Any
) -> None:
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info, "w0", slots=2)
    write(
        tmp_path / "sweep.yaml",
        f"""
name: sweep
tasks:
  - name: prep
    run: echo forty-two > data.txt
    outputs: [data.txt]
  - name: sim-{{i}}
    matrix: {{i: [1, 2]}}
    after: [prep]
    retries: 1
    retry_delay: 0.1s
    run:
      - cat inputs/prep/data.txt
      - test -e {tmp_path}/tried-{{i}} || (touch {tmp_path}/tried-{{i}}; echo first try; exit 3)
      - echo second try
  - name: long
    run: "{sys.executable} -c \\"[print('line %05d ' % i + 'x' * 60) for i in range(6000)]; print('the end')\\""
  - name: killed
    run: echo about to go; kill -TERM $$
""",
    )
    assert shoal("submit", "sweep.yaml", cwd=tmp_path).returncode == 0
    wait_for(lambda: task_state(tmp_path, "sweep", "killed") == "failed", 60, "killed to fail")
    wait_for(lambda: task_state(tmp_path, "sweep", "sim-1") == "succeeded", 60, "sim-1 to end")
    wait_for(lambda: task_state(tmp_path, "sweep", "long") == "succeeded", 60, "long to end")

    page = logged_in(browser, info)
    open_task(page, info, 1, "sim-1")
    # What it ran after and what it was given from it, as links.
    assert page.inner_text("#deps ul").split() == ["prep", "succeeded"]
    given = page.locator("#inputs a:has-text('inputs/prep/data.txt')")
    assert given.count() == 1
    body = page.evaluate("url => fetch(url).then(r => r.text())", given.get_attribute("href"))
    assert body.strip() == "forty-two"
    # Every attempt's log, the first one's too.
    logs = page.locator("details.attempt-log")
    assert logs.count() == 2
    assert "first try" in logs.nth(0).text_content()
    assert "second try" in logs.nth(1).text_content()
    assert "first try" not in logs.nth(1).text_content()
    # Its history in words.
    history = page.inner_text("#history")
    assert "attempt 1 started on w0" in history
    assert "attempt 1 failed on w0: exit code 3; the task will run again" in history
    assert "attempt 2 succeeded on w0" in history
    page.screenshot(path=str(tmp_path / "task-wide.png"), full_page=True)

    page.click("#deps a:has-text('prep')")
    page.wait_for_selector("h1:has-text('prep')")
    assert sorted(page.inner_text("#dependents ul").split()) == sorted(
        ["sim-1", "succeeded", "sim-2", "succeeded"]
    )

    # A long log opens on how it ended; then from its start, page by page, not only its end.
    open_task(page, info, 1, "long")
    assert page.inner_text("#log").rstrip("\n").endswith("the end")
    assert "The last 200 lines of this log" in page.inner_text("#log-note")
    page.click("#whole-log")
    page.wait_for_function("!document.querySelector('#log-note')")
    first = page.inner_text("#log")
    assert first.startswith("line 00000 ") and "the end" not in first
    page.click(".more-log")
    page.wait_for_function("document.querySelector('#log').innerText.includes('the end')")
    assert page.inner_text("#log").count("\n") >= 6000

    # A command killed by a signal says which.
    open_task(page, info, 1, "killed")
    attempts = page.inner_text("table")
    assert "SIGTERM" in attempts and "-15" not in attempts
    assert "about to go" in page.inner_text("#log")
    page.set_viewport_size(NARROW)
    page.screenshot(path=str(tmp_path / "task-narrow.png"), full_page=True)


def test_one_task_is_cancelled_or_retried_from_its_page_and_the_command_line(
    tmp_path: Path, procs: Procs, browser: Any
) -> None:
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info, "w0", slots=2)
    marker = tmp_path / "fixed"
    write(
        tmp_path / "work.yaml",
        f"""
name: work
tasks:
  - name: flaky
    run: test -e {marker}
  - name: nap
    run: sleep 120
  - name: after-nap
    after: [nap]
    run: echo woke
""",
    )
    shoal("submit", "work.yaml", cwd=tmp_path)
    wait_for(lambda: task_state(tmp_path, "work", "flaky") == "failed", 60, "flaky to fail")
    wait_for(lambda: task_state(tmp_path, "work", "nap") == "running", 60, "nap to run")

    page = logged_in(browser, info)
    open_task(page, info, 1, "nap")
    assert page.is_disabled("#task-retry")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#task-cancel")
    page.wait_for_selector("h1 .badge.cancelled", timeout=30000)
    assert task_state(tmp_path, "work", "after-nap") == "upstream_failed"
    page.wait_for_selector("#history:has-text('the task was cancelled by hand')")
    page.screenshot(path=str(tmp_path / "cancelled-task.png"), full_page=True)

    marker.touch()
    open_task(page, info, 1, "flaky")
    page.click("#task-retry")
    page.wait_for_selector("h1 .badge.succeeded", timeout=30000)
    assert "the task was retried by hand" in page.inner_text("#history")
    assert task_state(tmp_path, "work", "nap") == "cancelled"  # only the task asked for

    # The command line: one task again, and one line when it cannot be.
    done = shoal("retry", "work", "--task", "nap", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "2 tasks will run again" in done.stdout  # nap and what ran after it
    wait_for(lambda: task_state(tmp_path, "work", "nap") == "running", 60, "nap to run again")
    again = shoal("cancel", "work", "--task", "nap", cwd=tmp_path)
    assert again.returncode == 0 and "task nap cancelled" in again.stdout
    refused = shoal("cancel", "work", "--task", "flaky", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "shoal: task 'flaky' has already succeeded: only an unfinished task can be cancelled"
    ]


def _row(page: Any, worker: str) -> Any:
    return page.locator(f"#workers tr[data-worker='{worker}']")


def test_the_workers_page_shows_load_and_tasks_and_drains_or_stops_one_worker(
    tmp_path: Path, procs: Procs, browser: Any
) -> None:
    info = start_boss(procs, tmp_path)
    w0 = start_worker(procs, tmp_path, info, "w0", slots=2)
    w1 = start_worker(procs, tmp_path, info, "w1", slots=2)
    write(
        tmp_path / "naps.yaml",
        "name: naps\ntasks:\n  - name: nap-{i}\n    matrix: {i: [1, 2, 3, 4]}\n    run: sleep 8\n",
    )
    shoal("submit", "naps.yaml", cwd=tmp_path)

    def running() -> int:
        tasks = shoal_json("tasks", "naps", "--json", cwd=tmp_path)
        return sum(1 for t in tasks if t["state"] == "running")

    wait_for(lambda: running() == 4, 60, "every nap to run")

    page = logged_in(browser, info)
    page.click("a:has-text('Workers')")
    for name in ("w0", "w1"):
        page.wait_for_function(
            f"(document.querySelector(\"#workers tr[data-worker='{name}'] td.cpu\")"
            " || {innerText: ''}).innerText.includes('%')",
            timeout=30000,
        )
        row = _row(page, name)
        assert " of " in row.locator("td.memory").inner_text()  # "1.2 GiB of 7.8 GiB"
        assert row.locator("td.current a").count() == 2
    page.screenshot(path=str(tmp_path / "workers-wide.png"), full_page=True)
    page.set_viewport_size(NARROW)
    page.screenshot(path=str(tmp_path / "workers-narrow.png"), full_page=True)
    page.set_viewport_size(WIDE)

    # Drained: w0 finishes its two naps and leaves without taking more.
    _row(page, "w0").locator("button.drain").click()
    page.wait_for_selector("#workers tr[data-worker='w0']:has-text('draining')")
    # Stopped: w1's naps end now and wait for another worker.
    page.once("dialog", lambda dialog: dialog.accept())
    _row(page, "w1").locator("button.stop").click()
    assert w1.wait(60) == 0
    assert w0.wait(60) == 0
    tasks = {t["name"]: t["state"] for t in shoal_json("tasks", "naps", "--json", cwd=tmp_path)}
    assert sorted(tasks.values()) == ["ready", "ready", "succeeded", "succeeded"]
    page.wait_for_selector("#workers tr[data-worker='w1'] .badge.stopped", timeout=15000)
    page.wait_for_selector("#workers tr[data-worker='w0'] .badge.stopped", timeout=15000)
    interrupted = next(n for n, s in tasks.items() if s == "ready")
    open_task(page, info, 1, interrupted)
    assert "was interrupted on w1" in page.inner_text("#history")

    # The command line drains one by name; an unknown one is one line.
    w2 = start_worker(procs, tmp_path, info, "w2", slots=1)
    wait_for(lambda: any(w["name"] == "w2" for w in shoal_json("workers", "--json", cwd=tmp_path)))
    drained = shoal("drain", "w2", cwd=tmp_path)
    assert drained.returncode == 0 and "worker w2 asked to" in drained.stdout
    assert w2.wait(60) == 0
    unknown = shoal("drain", "nobody", cwd=tmp_path)
    assert unknown.returncode == 2 and "no worker 'nobody'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_a_narrow_page_keeps_the_graph_in_its_card(
    tmp_path: Path, procs: Procs, browser: Any
) -> None:
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info, "w0", slots=2)
    stages = ["fetch", "clean", "split", "train", "score", "report"]
    tasks = "".join(
        f"  - name: {s}\n    run: 'true'\n" + (f"    after: [{stages[i - 1]}]\n" if i else "")
        for i, s in enumerate(stages)
    )
    write(tmp_path / "chain.yaml", "name: chain\ntasks:\n" + tasks)
    shoal("submit", "chain.yaml", cwd=tmp_path)
    page = logged_in(browser, info, NARROW)
    page.goto(info["url"] + "/#/run/1")
    graph = "svg[aria-label='task graph']"
    page.wait_for_selector(graph)
    page.wait_for_selector("h1 .badge.succeeded", timeout=60000)
    # Read at once: the page redraws itself as its run changes.
    right, scroll, width = page.evaluate(
        f'() => {{ const g = document.querySelector("{graph}"); '
        "return [g.closest('.card').getBoundingClientRect().right, "
        "g.parentElement.scrollWidth, g.parentElement.clientWidth]; }"
    )
    assert right <= NARROW["width"]  # the card ends inside the page
    assert scroll > width  # the graph scrolls inside its card
    page.screenshot(path=str(tmp_path / "graph-narrow.png"), full_page=True)
    page.set_viewport_size(WIDE)
    page.screenshot(path=str(tmp_path / "graph-wide.png"), full_page=True)


def test_the_page_says_offline_while_its_boss_is_gone_and_catches_up_when_back(
    tmp_path: Path, procs: Procs, browser: Any
) -> None:
    listen = f"127.0.0.1:{free_port()}"
    info = start_boss(procs, tmp_path, listen=listen)
    boss = procs.procs[-1]
    page = logged_in(browser, info)
    page.wait_for_function("document.querySelector('#live').innerText.includes('live')")
    page.evaluate("window.sameDocument = true")
    boss.kill()  # gone at once, whatever it was doing
    boss.wait()
    page.wait_for_function(
        "document.querySelector('#live').innerText.includes('offline')", timeout=30000
    )
    assert "live" not in page.inner_text("#live")
    page.screenshot(path=str(tmp_path / "offline.png"))

    start_boss(procs, tmp_path, listen=listen)
    page.wait_for_function(
        "document.querySelector('#live').innerText.includes('live')", timeout=30000
    )
    write(tmp_path / "one.yaml", "name: after-the-restart\ntasks:\n  - name: a\n    run: 'true'\n")
    assert shoal("submit", "one.yaml", cwd=tmp_path).returncode == 0
    page.wait_for_selector("td a:has-text('after-the-restart')", timeout=30000)
    assert page.evaluate("window.sameDocument") is True  # caught up without a reload
    page.screenshot(path=str(tmp_path / "back.png"))


def test_a_sweep_reads_as_a_table_with_a_column_per_matrix_key(
    tmp_path: Path, procs: Procs, browser: Any
) -> None:
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info, "w0", slots=2)
    write(
        tmp_path / "sweep.yaml",
        """
name: sweep
tasks:
  - name: sim-{lr}-{depth}
    matrix: {lr: [0.1, 0.01], depth: [2, 3]}
    run: echo {lr} {depth}
  - name: combine
    after: ["sim-*"]
    run: echo combined
""",
    )
    shoal("submit", "sweep.yaml", cwd=tmp_path)
    page = logged_in(browser, info)
    page.goto(info["url"] + "/#/run/1")
    page.wait_for_selector("h1 .badge.succeeded", timeout=60000)
    headers = page.locator("#tasks thead th").all_inner_texts()
    assert [h.lower() for h in headers[:4]] == ["task", "lr", "depth", "state"]
    cells = page.locator("#tasks tbody tr:has(a:text-is('sim-0.01-3')) td").all_inner_texts()
    assert cells[:3] == ["sim-0.01-3", "0.01", "3"]
    combine = page.locator("#tasks tbody tr:has(a:text-is('combine')) td").all_inner_texts()
    assert combine[1:3] == ["", ""]  # no matrix: empty cells, not 'undefined'
    page.screenshot(path=str(tmp_path / "sweep-wide.png"), full_page=True)
    page.set_viewport_size(NARROW)
    page.screenshot(path=str(tmp_path / "sweep-narrow.png"), full_page=True)

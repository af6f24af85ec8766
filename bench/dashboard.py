#!/usr/bin/env python3
"""How fast the dashboard shows a big run, in Debian's chromium.

Starts `shoal boss`, submits a run of N tasks (10,000 by default, in matrix
groups and a join, half of them done by a worker first), logs in with
Playwright and measures, for the run's page: the browser's first paint and
the time until the task table and the graph are drawn.

    python bench/dashboard.py [--tasks 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.chromium import CHROMIUM, FLAGS  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="shoal-dash-"))
    port = free_port()
    groups = 10
    per = args.tasks // groups
    tasks = [
        {"name": f"g{g}-{{i}}", "matrix": {"i": list(range(per))}, "run": "true"}
        for g in range(groups)
    ]
    tasks.append({"name": "join", "after": ["g*"], "run": "true"})
    (work / "big.json").write_text(json.dumps({"name": "big", "tasks": tasks}))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    boss = subprocess.Popen(
        [sys.executable, "-m", "shoal", "boss", "--listen", f"127.0.0.1:{port}"], cwd=work, **quiet
    )  # type: ignore[arg-type]
    worker = None
    try:
        while not (work / ".shoal" / "boss.json").exists():
            time.sleep(0.05)
        token = (work / ".shoal" / "token").read_text().strip()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, SHOAL_TOKEN=token)
        subprocess.run(
            [sys.executable, "-m", "shoal", "submit", "big.json"],
            cwd=work,
            env=env,
            check=True,
            **quiet,
        )  # type: ignore[arg-type]
        worker = subprocess.Popen(
            [sys.executable, "-m", "shoal", "worker", "--boss", url, "--slots", "2"],
            cwd=work,
            env=env,
            **quiet,  # type: ignore[arg-type]
        )
        while True:  # let about half the tasks finish, so every state shows
            out = subprocess.run(
                [sys.executable, "-m", "shoal", "status", "big", "--json"],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
            )
            if json.loads(out.stdout)["counts"].get("succeeded", 0) >= args.tasks // 2:
                break
            time.sleep(0.5)
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        paints, tables = [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1300, "height": 950})
            page.goto(url + "/login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.wait_for_selector("h1")
            for _ in range(args.repeat):
                start = time.perf_counter()
                page.goto(url + "/#/run/1", wait_until="commit")
                page.wait_for_selector("#tasks tbody tr")
                page.wait_for_selector("svg[aria-label='task graph']")
                tables.append(time.perf_counter() - start)
                paint = page.evaluate(
                    "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null"
                )
                if paint is not None:
                    paints.append(paint / 1000)
                page.goto("about:blank")
            page.screenshot(path=str(work / "big.png"))
            browser.close()
        print(
            f"dashboard, run of {args.tasks + 1} tasks in {groups + 1} groups, median of {args.repeat}:"
        )
        if paints:
            print(f"  first contentful paint: {statistics.median(paints) * 1000:.0f} ms")
        print(
            f"  task table and graph drawn: {statistics.median(tables) * 1000:.0f} ms after navigation"
        )
    finally:
        for proc in (worker, boss):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

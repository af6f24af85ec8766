"""Pools that follow the queue: grown under load, shrunk when idle, never past their bounds.

These use the local provider (agents on this machine), whose machines start
in a second; the same keeper sizes cloud pools (tests/acceptance/test_clouds.py).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from shoal.launch.contract import Pool
from shoal.launch.up import up
from shoal.statedir import StateDir
from tests.conftest import Procs, shoal, shoal_json, start_boss, wait_for, write


def _machines(cwd: Path) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in shoal_json("machines", cwd=cwd)}


def _live(cwd: Path) -> list[str]:
    return [
        n for n, m in _machines(cwd).items() if m["state"] in ("requested", "starting", "running")
    ]


def test_a_pool_grows_from_nothing_under_load_and_shrinks_back_after_idle_stop(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    state = StateDir(tmp_path / ".shoal")
    pool = Pool(name="cpu", provider="local", min=0, max=2, idle_stop=3.0)
    brought = up(state, [pool], boss_url=info["url"], token=info["token"])
    kept = json.loads((state.root / "up.json").read_text())
    procs.extra.append(kept["pid"])
    assert brought == []  # min 0: nothing until work waits
    time.sleep(3)
    assert _live(tmp_path) == []

    most = 0
    watching = True

    def watch() -> None:
        nonlocal most
        while watching:
            most = max(most, len(_live(tmp_path)))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        write(
            tmp_path / "t.yaml",
            "tasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]}\n    run: sleep 1\n",
        )
        submitted = shoal("submit", "t.yaml", cwd=tmp_path)
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
        wait_for(
            lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
            timeout=120,
            what="the run to succeed",
        )
        # Idle for idle_stop: the keeper stops them all, and says why.
        wait_for(lambda: _live(tmp_path) == [], timeout=60, what="the idle machines to stop")
    finally:
        watching = False
        watcher.join()
    assert most == 2  # grown to its max, never above
    machines = _machines(tmp_path)
    assert set(machines) == {"cpu-1", "cpu-2"}
    assert all("idle for 3 s" in m["detail"] for m in machines.values()), machines
    log = (state.root / "logs" / "keeper.log").read_text()
    assert "pool cpu: starting cpu-1, cpu-2" in log

    down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr

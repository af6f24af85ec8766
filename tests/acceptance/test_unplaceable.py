"""Tasks no worker can take: named by `shoal status`, failed by `shoal run`, never in the way."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Procs, shoal, shoal_json, start_boss, start_worker, wait_for, write

TEN_GPU_THEN_PLAIN = (
    "tasks:\n"
    + "".join(f"  - {{name: train-{i}, run: 'true', requires: {{gpu: true}}}}\n" for i in range(10))
    + "  - {name: plain, run: echo done}\n"
)


def test_shoal_run_fails_what_no_worker_can_take_and_runs_the_rest(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", TEN_GPU_THEN_PLAIN)
    # It used to wait forever: the generous timeout is the old behaviour's failure.
    proc = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert (
        "10 tasks ('train-0', 'train-1', 'train-2', …): each needs labels gpu=true "
        "that no worker has: failed"
    ) in proc.stderr
    tasks = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}
    assert tasks["plain"]["state"] == "succeeded"
    assert tasks["plain"]["result"] == "done"
    assert tasks["train-9"]["state"] == "failed"
    assert tasks["train-9"]["cause"] == "needs labels gpu=true that no worker has"


def test_shoal_run_names_a_missing_label_and_a_missing_host(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - {name: train-3, run: 'true', requires: {gpu: true}}\n"
        "  - {name: x, run: 'true', host: h9}\n  - {name: after, run: 'true', after: [x]}\n",
    )
    proc = shoal("run", "t.yaml", "-j", "2", cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "task 'train-3' needs labels gpu=true that no worker has: failed" in proc.stderr
    assert "task 'x' is pinned to host 'h9', no such worker: failed" in proc.stderr
    states = {t["name"]: t["state"] for t in shoal_json("tasks", cwd=tmp_path)}
    assert states == {"train-3": "failed", "x": "failed", "after": "upstream_failed"}


def test_shoal_status_names_what_waits_for_a_worker_that_is_not_there(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info, "cpu-1")
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - {name: train, run: 'true', requires: {gpu: true}}\n"
        "  - {name: plain, run: 'true'}\n",
    )
    submitted = shoal("submit", "t.yaml", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    wait_for(
        lambda: shoal_json("tasks", cwd=tmp_path)[1]["state"] == "succeeded",
        what="the plain task to run",
    )
    status = shoal("status", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "task 'train' needs labels gpu=true that no worker has" in status.stdout
    view = json.loads(shoal("status", "--json", cwd=tmp_path).stdout)
    assert view["state"] == "running"
    assert view["unplaceable"] == [
        {"tasks": ["train"], "count": 1, "reason": "needs labels gpu=true that no worker has"}
    ]

"""Prometheus metrics, scraped and parsed as Prometheus does, against the task list."""

from __future__ import annotations

import http.client
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from shoal import spec
from shoal.client import BossClient
from tests.conftest import AgentThread, RunningBoss


def scrape(boss: RunningBoss) -> dict[str, list[tuple[dict[str, str], float]]]:
    parts = urlsplit(boss.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {boss.token}"})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    assert resp.status == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def test_metrics_agree_with_the_task_list(boss: RunningBoss, tmp_path: Path) -> None:
    agent = AgentThread(boss.url, boss.token, tmp_path / "w", slots=2)
    try:
        with BossClient(boss.url, boss.token) as client:
            text = "tasks:\n  - name: ok-{i}\n    matrix: {i: [1, 2, 3, 4, 5]}\n    run: echo {i}\n  - {name: bad, run: exit 3}\n  - {name: after-bad, run: 'true', after: [bad]}\n"
            rid = client.submit(spec.parse_text(text))
            deadline = time.monotonic() + 30
            while client.run(rid)["state"] == "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
            tasks = client.tasks(rid)
            metrics = scrape(boss)
    finally:
        agent.stop()
    by_state = {labels["state"]: value for labels, value in metrics["shoal_tasks"]}
    assert by_state == dict(Counter(t["state"] for t in tasks))
    attempts = {
        (labels["outcome"], labels["cause"]): value
        for labels, value in metrics["shoal_attempts_total"]
    }
    assert attempts == {("succeeded", "none"): 5, ("failed", "exit"): 1}
    assert metrics["shoal_ready_tasks"][0][1] == 0
    assert dict((labels["state"], v) for labels, v in metrics["shoal_workers"]) == {"active": 1}
    assert metrics["shoal_sync_requests_total"][0][1] >= 1
    assert metrics["shoal_task_duration_seconds_count"][0][1] == 5
    assert metrics["shoal_sync_seconds_count"][0][1] == metrics["shoal_sync_requests_total"][0][1]


def test_metrics_need_the_token(boss: RunningBoss) -> None:
    parts = urlsplit(boss.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", "/metrics")
    assert conn.getresponse().status == 401
    conn.close()

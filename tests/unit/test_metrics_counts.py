"""The boss's own metrics: counted as they happen, exposed as Prometheus reads them."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from shoal.boss.metrics import Metrics


class _Counts:
    def metrics_counts(self) -> dict[str, Any]:
        return {"tasks": {}, "ready": 0, "workers": {}, "attempts": []}


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_an_observation_on_a_bound_counts_under_it_and_every_bucket_is_cumulative() -> None:
    metrics = Metrics(_Counts())  # type: ignore[arg-type]
    for seconds in (0.001, 0.0011, 2.0):
        metrics.sync_seconds.observe(seconds)
    metrics.syncs.inc()
    metrics.syncs.inc()
    got = _samples(metrics.render().decode())
    assert got['shoal_sync_seconds_bucket{le="0.0005"}'] == 0
    assert got['shoal_sync_seconds_bucket{le="0.001"}'] == 1  # le: at or under
    assert got['shoal_sync_seconds_bucket{le="0.0025"}'] == 2
    assert got['shoal_sync_seconds_bucket{le="1.0"}'] == 2
    assert got['shoal_sync_seconds_bucket{le="+Inf"}'] == 3
    assert got["shoal_sync_seconds_count"] == 3
    assert abs(got["shoal_sync_seconds_sum"] - 2.0021) < 1e-9
    assert got["shoal_sync_requests_total"] == 2
    assert got["shoal_task_duration_seconds_count"] == 0


def test_a_boss_that_is_not_scraped_loads_no_prometheus_client() -> None:
    # The boss of every `shoal run` counts its syncs but is never scraped.
    code = (
        "import sys\n"
        "import shoal.boss.server\n"
        "from shoal.boss.metrics import Metrics\n"
        "m = Metrics(None)\n"
        "m.syncs.inc(); m.sync_seconds.observe(0.01)\n"
        "print(sorted(n for n in sys.modules if n.startswith('prometheus')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]", out

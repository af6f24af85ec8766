"""Prometheus metrics at ``/metrics``.

Counts by state are read from the database at scrape time, so they are right
whichever boss process is asked; sync latency and task durations are measured
as they happen.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from typing import Any

from shoal.scheduler import Scheduler

__all__ = ["Metrics", "cause_kind"]


def cause_kind(cause: str | None) -> str:
    """A cause's kind, a label of few values: exit, signal, timeout, lost, …"""
    if not cause:
        return "none"
    for prefix, kind in (
        ("exit code", "exit"),
        ("killed by", "signal"),
        ("timeout", "timeout"),
        ("lost", "lost"),
        ("cancelled", "cancelled"),
        ("superseded", "superseded"),
        ("interrupted", "interrupted"),
        ("worker stopped", "interrupted"),
    ):
        if cause.startswith(prefix):
            return kind
    return "other"


class Count:
    """A counter, counted in the boss's event loop (the routes that count run there)."""

    def __init__(self, name: str, doc: str) -> None:
        self.name, self.doc = name, doc
        self.value = 0
        self.created = time.time()

    def inc(self) -> None:
        self.value += 1


class Buckets:
    """A histogram: how many observations fell at or under each bound, their sum and count."""

    def __init__(self, name: str, doc: str, bounds: tuple[float, ...]) -> None:
        self.name, self.doc = name, doc
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: over every bound
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value


class Metrics:
    """The boss's metrics: database counts plus what the API measures.

    The routes count into plain numbers; ``prometheus_client`` is loaded at
    the first scrape only (a boss that is never scraped, as the one of every
    ``shoal run``, never loads it).
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.syncs = Count("shoal_sync_requests", "Sync requests served.")
        self.sync_seconds = Buckets(
            "shoal_sync_seconds",
            "Time to serve a sync (long-poll waits left out).",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.task_seconds = Buckets(
            "shoal_task_duration_seconds",
            "How long succeeded attempts ran.",
            (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400),
        )

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry()
        registry.register(_Collected(self))
        return generate_latest(registry)

    def collect(self) -> Iterator[Any]:
        """Every metric family, as ``prometheus_client`` exposes them."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

        counts = self.scheduler.metrics_counts()
        tasks = GaugeMetricFamily("shoal_tasks", "Tasks by state.", labels=["state"])
        for state, n in sorted(counts["tasks"].items()):
            tasks.add_metric([state], n)
        yield tasks
        yield GaugeMetricFamily(
            "shoal_ready_tasks", "Tasks ready and waiting for a worker.", value=counts["ready"]
        )
        workers = GaugeMetricFamily("shoal_workers", "Workers by state.", labels=["state"])
        for state, n in sorted(counts["workers"].items()):
            workers.add_metric([state], n)
        yield workers
        attempts = CounterMetricFamily(
            "shoal_attempts", "Attempts by outcome and kind of cause.", labels=["outcome", "cause"]
        )
        merged: dict[tuple[str, str], int] = {}
        for state, cause, n in counts["attempts"]:
            key = (state, cause_kind(cause))
            merged[key] = merged.get(key, 0) + n
        for (state, kind), n in sorted(merged.items()):
            attempts.add_metric([state, kind], n)
        yield attempts
        c = self.syncs
        yield CounterMetricFamily(c.name, c.doc, value=c.value, created=c.created)
        for h in (self.sync_seconds, self.task_seconds):
            family = Metric(h.name, h.doc, "histogram")
            below = 0
            for bound, n in zip([*h.bounds, float("inf")], h.counts, strict=True):
                below += n
                le = "+Inf" if bound == float("inf") else repr(float(bound))
                family.add_sample(h.name + "_bucket", {"le": le}, float(below))
            family.add_sample(h.name + "_count", {}, float(below))
            family.add_sample(h.name + "_sum", {}, h.sum)
            family.add_sample(h.name + "_created", {}, h.created)
            yield family


class _Collected:
    """What the registry asks at a scrape: the boss's metrics, collected then."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self.metrics.collect()

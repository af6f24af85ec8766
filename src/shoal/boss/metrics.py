"""Prometheus metrics at ``/metrics``.

Counts by state are read from the database at scrape time, so they are right
whichever boss process is asked; sync latency and task durations are measured
as they happen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

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


class _FromDatabase(Collector):
    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[Any]:
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


class Metrics:
    """The boss's registry: database counts plus what the API measures."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_FromDatabase(scheduler))
        self.syncs = Counter("shoal_sync_requests", "Sync requests served.", registry=self.registry)
        self.sync_seconds = Histogram(
            "shoal_sync_seconds",
            "Time to serve a sync (long-poll waits left out).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.task_seconds = Histogram(
            "shoal_task_duration_seconds",
            "How long succeeded attempts ran.",
            buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400),
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)

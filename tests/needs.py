"""Tests that need a tool (root, sshd, chromium, PostgreSQL, tmux, an interpreter...)
skip without it on a developer's machine, and fail without it in CI.

``needs(what, present)`` marks a test that cannot run without ``what``. The
hooks below turn every skip into a failure when ``CI=true``: CI installs
every tool (``.ci/run``), so a test that would skip there hides something.
The root ``conftest.py`` loads this module as a plugin.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

__all__ = ["CI", "needs"]

CI = os.environ.get("CI") == "true"


def needs(what: str, present: bool) -> pytest.MarkDecorator:
    """Skip the test where ``what`` is missing (``present`` false); under CI, fail it."""
    return pytest.mark.skipif(not present, reason=f"needs {what}")


def _unhidden(report: Any) -> None:
    """A skip, under CI, made a failure that says what was missing."""
    if not CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    report.outcome = "failed"
    report.longrepr = f"CI=true and this test would skip ({reason}): .ci/run must install it"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[Any, Any, None]:
    outcome = yield
    _unhidden(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[Any, Any, None]:
    outcome = yield
    _unhidden(outcome.get_result())

"""Wording found by a new user's probe: worker log lines as text, a finished task's state."""

from __future__ import annotations

import json

import pytest

from shoal.agent import worker
from shoal.scheduler.runs import _has_ended


def test_worker_log_lines_read_as_text_when_asked_and_stay_json_otherwise(
    capsys: pytest.CaptureFixture[str],
) -> None:
    try:
        worker.set_log_format("text")
        worker.log_event("boss_unreachable", url="http://127.0.0.1:9", error=None)
        text = capsys.readouterr().err
        worker.set_log_format("json")
        worker.log_event("told_to_stop", order="drain")
        line = capsys.readouterr().err
    finally:
        worker.set_log_format("json")
    assert text.endswith(" boss unreachable: url=http://127.0.0.1:9\n")
    assert not text.startswith("{")
    fields = json.loads(line)
    assert (fields["event"], fields["order"]) == ("told_to_stop", "drain")


def test_a_finished_task_says_how_it_ended_in_words() -> None:
    assert _has_ended("succeeded") == "has already succeeded"
    assert _has_ended("failed") == "has already failed"
    assert _has_ended("upstream_failed") == "will not run: a task it runs after failed"

"""The boss's log lines: one form for shoal's own and for its HTTP server's."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from shoal import logs


@pytest.fixture
def restored() -> Iterator[None]:
    kept = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in ("shoal", "uvicorn")
        for lg in [logging.getLogger(name)]
    }
    yield
    for name, (handlers, level, propagate) in kept.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def test_a_malformed_request_warning_is_a_json_line_like_the_boss_own(
    restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(log_format="json")
    # What uvicorn logs when a client sends something that is not HTTP.
    logging.getLogger("uvicorn.error").warning(
        "Invalid HTTP request received.", extra={"color_message": "\x1b[31mInvalid\x1b[0m"}
    )
    line = json.loads(capsys.readouterr().err.strip())
    assert line["level"] == "warning" and line["message"] == "Invalid HTTP request received."
    assert line["event"] == "uvicorn.error" and "color_message" not in line

"""Recorded cloud API answers for libcloud drivers, libcloud's own way of testing.

libcloud's test suite replaces a connection's ``conn_class`` with a
``MockHttp`` that answers each request from a fixture file. This is a small
one of our own: :class:`Recorded` holds the answers (method and path, or a
regular expression of the path, to a status and a file of
``tests/unit/cloud_answers/<cloud>/``), and records every request it gets,
so that a test asserts on what the driver sent. Nothing here opens a socket:
:func:`recorded` also makes libcloud's real connection class, and any
socket's ``connect``, refuse to for the test's length.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

ANSWERS = Path(__file__).parent / "unit" / "cloud_answers"


class NoRecordedAnswer(Exception):
    """A request the test recorded no answer for."""


@dataclass
class Sent:
    """One request as the driver sent it."""

    method: str
    host: str
    path: str
    query: dict[str, list[str]]
    body: str
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Answer:
    method: str
    path: re.Pattern[str]
    status: int
    body: str
    headers: dict[str, str]
    host: str | None = None


@dataclass
class Recorded:
    """The answers one test gives, and the requests it was sent."""

    cloud: str
    answers: list[_Answer] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)

    def answer(
        self,
        method: str,
        path: str,
        file: str | None = None,
        *,
        status: int = 200,
        body: Any = None,
        regex: bool = False,
        host: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``method path`` (exact, or a regular expression) with a file or a body.

        A later answer for the same request wins over an earlier one.
        """
        if file is not None:
            text = (ANSWERS / self.cloud / file).read_text(encoding="utf-8")
        elif body is None:
            text = ""
        else:
            text = body if isinstance(body, str) else json.dumps(body)
        kind = "text/xml" if text.lstrip().startswith("<") else "application/json"
        pattern = re.compile(path if regex else re.escape(path))
        self.answers.insert(
            0,
            _Answer(method, pattern, status, text, {"content-type": kind, **(headers or {})}, host),
        )

    def respond(self, host: str, method: str, url: str, body: Any, headers: Any) -> _Response:
        parts = urlsplit(url)
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        self.sent.append(
            Sent(
                method,
                host,
                parts.path,
                parse_qs(parts.query),
                body if isinstance(body, str) else "" if body is None else str(body),
                {str(k).lower(): str(v) for k, v in (headers or {}).items()},
            )
        )
        for a in self.answers:
            if a.method == method and a.path.fullmatch(parts.path) and a.host in (None, host):
                return _Response(a.status, a.body, a.headers)
        self.unanswered.append(f"{method} {host}{parts.path}")
        raise NoRecordedAnswer(f"no recorded answer for {method} {host}{parts.path}")

    def requests(self, method: str, path_regex: str) -> list[Sent]:
        """The requests sent so far to ``method`` and a path matching the expression."""
        return [s for s in self.sent if s.method == method and re.fullmatch(path_regex, s.path)]


class _Response:
    """What libcloud reads of a ``requests`` response."""

    def __init__(self, status: int, text: str, headers: dict[str, str]) -> None:
        self.status_code = status
        self.status = status
        self.text = text
        self.content = text.encode("utf-8")
        self.headers = headers
        self.reason = {200: "OK", 201: "Created", 202: "Accepted", 204: "No Content"}.get(
            status, "Error"
        )
        self.request = None

    def iter_content(self, chunk_size: int = 1, decode_unicode: bool = False) -> Iterator[bytes]:
        yield self.content

    def read(self) -> bytes:
        return self.content


def connection_class(recorder: Recorded) -> type:
    """A class libcloud's connections can use as ``conn_class``, answering from ``recorder``."""

    class RecordedConnection:
        def __init__(self, host: str, port: int, secure: bool | None = None, **kwargs: Any):
            self.host, self.port, self.secure = host, port, secure
            self.response: _Response | None = None

        def connect(self) -> None:
            pass

        def request(
            self,
            method: str,
            url: str,
            body: Any = None,
            headers: Any = None,
            raw: bool = False,
            stream: bool = False,
            hooks: Any = None,
        ) -> None:
            self.response = recorder.respond(self.host, method, url, body, headers)

        prepared_request = request

        def getresponse(self) -> _Response:
            assert self.response is not None
            return self.response

        def close(self) -> None:
            pass

    return RecordedConnection


def recorded(monkeypatch: pytest.MonkeyPatch, cloud: str) -> Recorded:
    """Make every libcloud connection of this test answer from a new :class:`Recorded`."""
    from libcloud.common import azure_arm, base
    from libcloud.http import LibcloudConnection

    recorder = Recorded(cloud)
    conn = connection_class(recorder)
    monkeypatch.setattr(base.Connection, "conn_class", conn)
    monkeypatch.setattr(azure_arm.AzureResourceManagementConnection, "conn_class", conn)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a test of recorded answers tried to reach the network")

    monkeypatch.setattr(LibcloudConnection, "request", no_network)
    monkeypatch.setattr(LibcloudConnection, "prepared_request", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return recorder

"""A long poll a worker was asked to stop before it went out is broken off, not waited out."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from shoal import protocol as p
from shoal.agent.client import AgentClient, BossDown


class HoldingBoss:
    """A boss that reads requests and never answers (a long poll with no work)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while True:
            try:
                conn, _ = self.sock.accept()
                break
            except TimeoutError:
                if self.done.is_set():
                    return
        with conn:
            conn.settimeout(0.1)
            data = b""
            while not self.done.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                data += chunk
                if b"\r\n\r\n" in data:
                    self.requests.append(data.split(b"\r\n", 1)[0])
                    data = b""


@pytest.fixture
def boss() -> Iterator[HoldingBoss]:
    b = HoldingBoss()
    yield b
    b.done.set()
    b.thread.join(5)
    b.sock.close()


def long_poll() -> p.SyncRequest:
    return p.SyncRequest(worker_id=1, free_slots=1, wait=30.0)


def test_a_stop_asked_before_the_poll_went_out_sends_nothing(boss: HoldingBoss) -> None:
    client = AgentClient(f"http://127.0.0.1:{boss.port}", "t" * 32)
    with pytest.raises(BossDown, match="broken off"):
        client.sync(long_poll(), lambda: True)
    client.drop_connection()
    assert boss.requests == []


def test_a_stop_asked_while_the_poll_connected_does_not_wait_for_its_answer(
    boss: HoldingBoss,
) -> None:
    client = AgentClient(f"http://127.0.0.1:{boss.port}", "t" * 32)
    asked = iter([False, True])  # the stop came once the request was on its way
    with pytest.raises(BossDown, match="broken off"):
        client.sync(long_poll(), lambda: next(asked))
    client.drop_connection()
    assert len(boss.requests) <= 1

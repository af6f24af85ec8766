"""Serving the boss: uvicorn on a socket we bind ourselves.

Binding first means the address (port 0 included) is known before the server
starts, and a worker can register as soon as it is told the URL.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path

import uvicorn

from shoal.boss.api import create_app
from shoal.boss.datastore import LocalDatastore
from shoal.exceptions import BadInput
from shoal.scheduler import Scheduler
from shoal.store import Store

__all__ = ["Boss", "parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` into a host and a port."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise BadInput(f"bad --listen '{text}': use HOST:PORT, e.g. 127.0.0.1:8765") from None
    if not 0 <= number <= 65535:
        raise BadInput(f"bad --listen '{text}': the port must be 0-65535")
    return host, number


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        return asyncio.new_event_loop()


class Boss:
    """A scheduler, a datastore and the HTTP API over them, on one socket."""

    def __init__(
        self,
        *,
        db: str | Path,
        data: str | Path,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        lease_seconds: float = 30.0,
    ) -> None:
        self.store = Store(db)
        self.scheduler = Scheduler(self.store, lease_seconds=lease_seconds)
        self.datastore = LocalDatastore(data)
        self.token = token
        self.app = create_app(self.scheduler, self.datastore, token)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host, port))
        except OSError as e:
            self.sock.close()
            raise BadInput(f"cannot listen on {host}:{port}: {e.strerror} (choose another --listen)") from None
        self.sock.listen(1024)
        self.host, self.port = self.sock.getsockname()[:2]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="httptools",
            timeout_keep_alive=120,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve(self) -> None:
        """Serve in this thread until :meth:`stop` (or SIGINT/SIGTERM in the main thread)."""
        loop = _new_loop()
        try:
            loop.run_until_complete(self.server.serve(sockets=[self.sock]))
        finally:
            loop.close()

    def start(self) -> None:
        """Serve in a background thread; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self.serve, name="shoal-boss", daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the boss failed to start")
            self._thread.join(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self.sock.close()
        self.store.close()


logging.getLogger("shoal.boss").addHandler(logging.NullHandler())

"""Serving the boss: uvicorn on a socket we bind ourselves.

Binding first means the address (port 0 included) is known before the server
starts, and a worker can register as soon as it is told the URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from shoal.boss.api import ChangeFeed, Limits, WorkSignal, create_app
from shoal.boss.health import Health
from shoal.boss.listen import bind, parse_listen, url_of
from shoal.boss.tokens import Tokens
from shoal.datastore import bundle_path, open_datastore
from shoal.scheduler import Scheduler
from shoal.spec import RunSpec
from shoal.store import Store

if TYPE_CHECKING:
    from shoal.security import ServerTls

__all__ = ["Boss", "parse_listen"]  # parse_listen: re-exported for the CLI

log = logging.getLogger("shoal.boss")

# Syncs at once on a database that takes writers side by side (PostgreSQL):
# each mostly waits for the database, so more of them overlap (measured with
# bench/scale.py on 2 cores: 16 beat 8 and 24). The store's pool holds as many.
SYNC_THREADS = 16
# How often the housekeeper removes what ended attempts staged.
STAGED_SWEEP_SECONDS = 60.0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is absent on Windows
        return asyncio.new_event_loop()


class _Server(uvicorn.Server):
    """uvicorn's server, which first ends what would hold its shutdown open forever.

    uvicorn waits for every response to finish; a dashboard's event stream
    never does, so Ctrl-C would wait until the browser closes its tab.
    """

    def __init__(self, config: uvicorn.Config, on_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_shutdown = on_shutdown
        # Set once it accepts requests: whoever started it is woken then, not at a poll.
        self.serving = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.serving.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)


class Boss:
    """A scheduler, a datastore and the HTTP API over them, on one socket.

    ``tls``: serve HTTPS (and with its ``mtls``, check clients' certificates).
    ``advertise``: the URL to give out, when the socket's own address is not one.
    """

    def __init__(
        self,
        *,
        db: str | Path,
        data: str | Path,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        lease_seconds: float = 30.0,
        speculate: bool = True,
        speculate_min: float = 30.0,
        max_losses: int = 3,
        sock: socket.socket | None = None,
        limits: Limits | None = None,
        data_options: Mapping[str, str] | None = None,
        tls: ServerTls | None = None,
        advertise: str | None = None,
    ) -> None:
        self.datastore = open_datastore(data, data_options)  # first: a bad URL touches nothing
        self.store = Store(db)
        self.scheduler = Scheduler(
            self.store,
            lease_seconds=lease_seconds,
            speculate=speculate,
            speculate_min=speculate_min,
            max_losses=max_losses,
            promote=self.datastore.promote,
        )
        self.token = token
        self.tls = tls
        # Its other credentials: `shoal run` mints its workers' token here.
        self.tokens = Tokens(self.store, token)
        self.signal = WorkSignal()
        self.feed = ChangeFeed()
        self.health = Health()
        self.app = create_app(
            self.scheduler,
            self.datastore,
            token,
            self.signal,
            self.feed,
            threads=0 if self.store.is_sqlite else SYNC_THREADS,
            health=self.health,
            limits=limits,
            tokens=self.tokens,
        )
        self.sock = sock if sock is not None else bind(host, port)
        # What workers and commands are told; never a wildcard such as 0.0.0.0.
        self.url = advertise or url_of(self.sock, https=tls is not None)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            # Not uvicorn's logging setup (its dictConfig costs ms at every start):
            # what uvicorn says goes through shoal's handler (logs.configure).
            log_config=None,
            lifespan="off",
            http=tls.protocol() if tls is not None and tls.mtls else "httptools",
            proxy_headers=False,
            timeout_keep_alive=120,
        )
        if tls is not None:
            # Our own context (uvicorn's would take no new revocation list).
            config.load()
            config.ssl = tls.context
        self.server = _Server(config, on_shutdown=self.feed.close)
        self.boss_id: int | None = None
        self.housekeeper = False
        self._lock = self.store.housekeeping_lock()
        self._stop_listening: Callable[[], None] = lambda: None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(
        self,
        spec: RunSpec,
        bundle_archive: Any = None,
        digest: str | None = None,
        *,
        reuse: bool = False,
    ) -> int:
        """Submit a run in this process (what ``POST /v1/runs`` does, without HTTP)."""
        if bundle_archive is not None and digest is not None:
            path = bundle_path(digest)
            if not self.datastore.exists(path):
                self.datastore.write_file(path, bundle_archive)
        run_id = self.scheduler.submit(spec, bundle=digest, reuse=reuse)
        self.wake()
        return run_id

    def wake(self) -> None:
        """Wake long-polling workers (from any thread)."""
        loop = self._loop
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(self.signal.notify)
            loop.call_soon_threadsafe(self.feed.bump)

    def serve(self) -> None:
        """Serve in this thread until :meth:`stop` (or SIGINT/SIGTERM in the main thread)."""
        loop = self._loop = _new_loop()
        self._task = loop.create_task(self._main())
        try:
            loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass  # stopped at once by stop(fast=True)
        finally:
            # Let what was cancelled run its clean-up before the loop closes.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    @property
    def tick(self) -> float:
        """How often housekeeping runs: a few times per lease, at most once a second."""
        return max(0.1, min(1.0, self.scheduler.lease_seconds / 4))

    async def _main(self) -> None:
        self._enrol()
        housekeeping = asyncio.create_task(self._housekeeping())
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            housekeeping.cancel()
            # Stopped at once (stop(fast=True)): close what uvicorn would have.
            for listener in getattr(self.server, "servers", []):
                listener.close()

    def _enrol(self) -> None:
        """Record this boss in the database and listen for other bosses' work."""
        with self.store.transaction() as tx:
            self.boss_id = tx.insert_boss(self.url, socket.gethostname(), os.getpid(), time.time())
        self.scheduler.boss_id = self.boss_id
        self.scheduler.origin = f"{socket.gethostname()}:{os.getpid()}:{self.boss_id}"
        self._stop_listening = self.store.listen(self.scheduler.origin, self.wake)
        self._take_housekeeping()

    def others_serving(self) -> bool:
        """Whether other bosses serve this database now (never on SQLite: one boss per file)."""
        if self.store.is_sqlite:
            return False
        with self.store.read() as tx:
            return tx.others_serving(self.boss_id or -1, time.time() - 3 * self.tick)

    def _take_housekeeping(self) -> None:
        """Become the housekeeper if no other boss is (the database decides)."""
        was = self.housekeeper
        self.housekeeper = self._lock.hold()
        now = time.time()
        with self.store.transaction() as tx:
            assert self.boss_id is not None
            tx.touch_boss(self.boss_id, now, self.housekeeper)
        if self.housekeeper and not was:
            # Workers kept running while no boss was there: give each running
            # attempt a whole lease from now before any can be declared lost.
            # Not when other bosses were serving all along: they renewed them.
            if not self.others_serving():
                self.scheduler.extend_leases()
            log.info(
                "housekeeping: this boss sweeps leases",
                extra={"event": "housekeeper", "boss": self.boss_id},
            )

    async def _housekeeping(self) -> None:
        """Expire leases (and so re-run lost work) a few times per lease, as housekeeper.

        Now and then, also remove the outputs staged by attempts that ended
        without a report (lost, cancelled): they will never be promoted.
        """
        staged_swept = time.monotonic()
        while True:
            await asyncio.sleep(self.tick)
            try:
                if self.tls is not None:
                    # Every boss, for its own connections: a sync held open by
                    # a revoked certificate gets no work.
                    self.tls.close_revoked()
                self._take_housekeeping()
                if not self.housekeeper:
                    continue
                readied = self.scheduler.expire()
                if time.monotonic() - staged_swept > STAGED_SWEEP_SECONDS:
                    staged_swept = time.monotonic()
                    self._sweep_staged()
            except Exception:  # a failed sweep is retried at the next tick
                log.exception("housekeeping failed", extra={"event": "sweep_failed"})
                continue
            if readied:
                self.signal.notify()
                self.feed.bump()

    def _sweep_staged(self) -> None:
        staged = self.datastore.staged_attempts()
        if staged:
            running = self.scheduler.running_attempts(staged)
            self.datastore.discard_staged([a for a in staged if a not in running])

    def start(self) -> None:
        """Serve in a background thread; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self.serve, name="shoal-boss", daemon=True)
        self._thread.start()
        while not self.server.serving.wait(0.05):
            if not self._thread.is_alive():
                raise RuntimeError("the boss failed to start")

    def stop(self, *, fast: bool = False) -> None:
        """Stop serving. ``fast``: no graceful close, for when no client is left."""
        self.server.should_exit = True
        if fast and self._loop is not None and self._task is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._task.cancel)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.sock.close()
        self.close()

    def close(self) -> None:
        """Leave the database: stop listening, hand housekeeping over, close."""
        self._stop_listening()
        self._lock.release()
        if self.boss_id is not None:
            # The database may be what failed.
            with contextlib.suppress(Exception), self.store.transaction() as tx:
                tx.stop_boss(self.boss_id, time.time())
            self.boss_id = None
        self.store.close()

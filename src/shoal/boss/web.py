"""What every route module of the boss shares: its context and the request helpers.

A route reads its input only through these helpers, so that every bad
request (a body that is not JSON or is too large, an id out of range, a
query that is not a number) ends as a 4xx with one line, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from shoal import protocol as p
from shoal.boss.health import Health
from shoal.boss.metrics import Metrics
from shoal.datastore.base import Datastore
from shoal.exceptions import BadInput, TooLarge, WrongMediaType
from shoal.machines import Machines
from shoal.scheduler import Scheduler

if TYPE_CHECKING:  # tokens' routes use this module's helpers
    from shoal.boss.tokens import Tokens

__all__ = [
    "MAX_ID",
    "ChangeFeed",
    "Context",
    "Limits",
    "WorkSignal",
    "WorkerOrders",
    "error_response",
    "json_response",
    "one_line",
    "path_id",
    "query_int",
    "read_json",
    "run_id",
]

# Ids are signed 64-bit integers in both databases.
MAX_ID = 2**63 - 1
# JSON nested deeper than this is refused (no message of shoal's nests past a dozen).
MAX_DEPTH = 64

_T = TypeVar("_T")


@dataclass(frozen=True)
class Limits:
    """How much a request may ask of the boss."""

    # A JSON request body (a submitted run is the largest): bytes.
    max_body: int = 32 * 1024 * 1024
    # An upload that sends nothing for this long is dropped: seconds.
    upload_idle: float = 60.0


class WorkSignal:
    """Wakes long-polling syncs when tasks become ready or runs change."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None

    def waiter(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None


class ChangeFeed:
    """Counts state changes; dashboards follow it through server-sent events."""

    def __init__(self) -> None:
        self.generation = 0
        self.closed = False  # the boss is stopping: streams end, so that it can
        self._event: asyncio.Event | None = None
        # Set when a sync ended a run, for a thread of the boss's process that
        # waits for one (``shoal run`` sees its run end at once, not at its
        # next look; runs that end otherwise are seen at that look).
        self.runs_ended = threading.Event()

    def close(self) -> None:
        """End every stream that follows this feed (their browsers reconnect to the next boss)."""
        self.closed = True
        self.runs_ended.set()
        if self._event is not None:
            self._event.set()
            self._event = None

    def bump(self) -> None:
        self.generation += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, seen: int, timeout: float) -> int:
        if self.generation == seen and not self.closed:
            if self._event is None:
                self._event = asyncio.Event()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        return self.generation


# What the boss may ask of one worker: finish what it runs and take no more
# (drain), or that and stop what it runs too (stop; the tasks run elsewhere).
WORKER_ORDERS = ("drain", "stop")
# The figures of a worker's usage report that the boss keeps (protocol.SyncRequest.usage).
USAGE_KEYS = ("cpu", "load", "cores", "memory_used", "memory_total")


class WorkerOrders:
    """What this boss asked of its workers, and what each said of its machine's load.

    Kept in memory: a worker syncs through this boss, and an order given
    here reaches it on its next sync; a boss that restarts forgets them,
    as the worker that heard one has drained by then.
    """

    def __init__(self) -> None:
        self.orders: dict[int, str] = {}
        self.usage: dict[int, dict[str, float]] = {}
        self._told: set[int] = set()

    def give(self, worker_id: int, order: str) -> None:
        if order not in WORKER_ORDERS:
            raise ValueError(f"no worker order '{order}'")
        # A stop outranks a drain already given.
        if self.orders.get(worker_id) != "stop":
            self.orders[worker_id] = order

    def heard(self, worker_id: int, usage: dict[str, float] | None, now: float) -> str | None:
        """Note a worker's usage report; the order it has to follow, if any."""
        if usage:
            kept = {k: usage[k] for k in USAGE_KEYS if k in usage}
            kept["at"] = now
            self.usage[worker_id] = kept
        return self.orders.get(worker_id)

    def tell(self, worker_id: int, running: list[int], response: p.SyncResponse) -> p.SyncResponse:
        """Put the worker's order in its sync's answer.

        ``stop`` is said once: an agent takes a second one as "interrupt
        what runs now". A stop order cancels what it runs instead (stopped
        by its worker, an attempt is reported and its task runs elsewhere).
        """
        order = self.orders.get(worker_id)
        if order is None:
            return response
        if worker_id not in self._told:
            self._told.add(worker_id)
            response.stop = True
        if order == "stop":
            response.cancel = sorted(set(response.cancel) | set(running))
        return response

    def gone(self, worker_id: int) -> None:
        self.orders.pop(worker_id, None)
        self.usage.pop(worker_id, None)
        self._told.discard(worker_id)


@dataclass
class Context:
    """What the routes work on: the scheduler, the datastore, and the boss's wake-ups."""

    scheduler: Scheduler
    datastore: Datastore
    signal: WorkSignal
    feed: ChangeFeed
    health: Health
    limits: Limits
    metrics: Metrics
    machines: Machines  # what shoal started, recorded in the boss's database
    tokens: Tokens  # the credentials besides the boss's own
    pool: ThreadPoolExecutor | None = None
    workforce: WorkerOrders = field(default_factory=WorkerOrders)

    async def in_pool(self, call: Callable[[], _T]) -> _T:
        """Run a scheduler call on the sync threads, where there are any."""
        if self.pool is None:
            return call()
        return await asyncio.get_running_loop().run_in_executor(self.pool, call)

    def changed(self, *, work: bool = False) -> None:
        """Tell the dashboards something changed, and idle workers if there is work."""
        if work:
            self.signal.notify()
        self.feed.bump()


def one_line(message: str, limit: int = 1000) -> str:
    """A message fit for one line: control characters (a name's newline, a NUL) escaped."""
    if message.isprintable() and len(message) <= limit:
        return message
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def error_response(message: str, status: int) -> Response:
    """The answer to a request that failed: ``{"error": one line}``."""
    return json_response({"error": one_line(message)}, status)


def json_response(data: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")).encode(),
        status_code=status,
        media_type="application/json",
    )


async def read_json(request: Request, limit: int, *, flat: bool = True) -> dict[str, Any]:
    """The request's JSON object, read up to ``limit`` bytes.

    Refused: a body that does not say it is JSON (a browser's form can send
    only form types, so this also keeps cross-site forms out), one over the
    limit, one that is not a JSON object, or (``flat``) one nested more than
    :data:`MAX_DEPTH` levels. A submitted run is not walked for its depth
    here: reading it as a task file checks every value's shape anyway.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise WrongMediaType(
            f"this route reads JSON: send 'Content-Type: application/json' (got '{kind or 'none'}')"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return parse_json_object(bytes(body), flat=flat)


def _too_large(limit: int) -> TooLarge:
    return TooLarge(
        f"the request body is over the boss's limit of {limit / 2**20:g} MiB "
        "(shoal boss --max-body raises it)"
    )


def parse_json_object(raw: bytes, *, flat: bool = True) -> dict[str, Any]:
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise TooLarge(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as e:
        raise BadInput(f"the request body is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    if flat and _depth(data) > MAX_DEPTH:
        raise TooLarge(f"the request body nests deeper than {MAX_DEPTH} levels")
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """How deeply a JSON value nests, stopping as soon as it is past the limit.

    Walks only containers that hold containers, so a large flat body (a
    run of 100,000 tasks is a list of flat objects) costs one look at each.
    """
    level = 0
    layer = [value]
    while layer:
        level += 1
        if level > MAX_DEPTH:
            return level
        below: list[Any] = []
        for item in layer:
            children = item.values() if isinstance(item, dict) else item
            below.extend(c for c in children if isinstance(c, dict | list) and c)
        layer = below
    return level


def path_id(request: Request, name: str) -> int:
    """An id from the path, refused (400) when it cannot be one."""
    text = request.path_params[name]
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        raise BadInput(f"{name} '{text[:40]}' is not an id (a whole number below 2^63)")
    return int(text)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole number from the query, within [low, high]; refused (400) otherwise."""
    text = request.query_params.get(name, "")
    if text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadInput(f"?{name}= takes a whole number, not '{text[:40]}'") from None
    return max(low, min(high, value))


def run_id(ctx: Context, request: Request) -> int:
    """The run a path names: an id, a run's name (its latest), or 'latest'."""
    ref = request.path_params["run"]
    return ctx.scheduler.resolve_run(None if ref == "latest" else ref)

"""Scoped credentials: what each token may do, kept hashed in the database.

Four kinds of caller:

* ``admin``: the boss's token (``STATE/token``, ``SHOAL_TOKEN``), never
  stored in the database; it may do everything;
* ``read``: views what the dashboard and ``/metrics`` show, changes nothing;
* ``worker``: may only register a worker; launchers hand it to the agents
  they start (``shoal run``, ``shoal up``);
* ``per-worker``: what the boss answers a registration with, bound to that
  worker: it syncs as that worker, says its goodbye, sends the outputs and
  logs of the attempts it holds and reads what they need (their inputs and
  their bundle). A worker's tokens end when it stops or its launcher says
  it is gone, and with the token that registered it.

The database holds each token's sha256 only. A boss keeps the credentials
it resolved for :data:`CACHE_SECONDS`, so a sync costs no query for its
token; a token revoked through this boss is dropped at once, through another
boss sharing the database within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from shoal import protocol as p
from shoal.boss.web import json_response, read_json
from shoal.exceptions import BadInput, NotFound
from shoal.store import Store
from shoal.store import tokens as q

__all__ = [
    "ADMIN",
    "CACHE_SECONDS",
    "KINDS",
    "PER_WORKER",
    "READ",
    "WORKER",
    "Credential",
    "Tokens",
    "token_routes",
]

ADMIN = "admin"
READ = "read"
WORKER = "worker"
PER_WORKER = q.PER_WORKER
KINDS = (ADMIN, READ, WORKER, PER_WORKER)
# The kinds `shoal tokens add` makes.
ISSUED = (READ, WORKER)

# How long a resolved credential is believed without asking the database.
CACHE_SECONDS = 10.0
# The most credentials kept; past it the cache starts afresh.
CACHE_SIZE = 10_000
# How often a token's "last used" is written, at most.
TOUCH_SECONDS = 60.0
# Per-worker tokens that ended this long ago are forgotten.
PURGE_SECONDS = 7 * 86400.0

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")


@dataclass(frozen=True)
class Credential:
    """Who is calling: the kind of its token, the token's name, its worker."""

    kind: str
    name: str
    worker_id: int | None = None  # a per-worker token: the worker it acts as
    token_id: int | None = None
    parent: int | None = None  # a per-worker token: the token that registered its worker
    expires: float | None = None

    @property
    def admin(self) -> bool:
        return self.kind == ADMIN


ADMIN_CREDENTIAL = Credential(ADMIN, "admin")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def session_kind(token_id: int) -> str:
    """What a dashboard session logged in with a read token records: the token it came from."""
    return f"{READ}:{token_id}"


def new_token() -> str:
    """A fresh token: 256 random bits, so its sha256 is all the database needs."""
    return "shoal_" + secrets.token_urlsafe(32)


class Tokens:
    """Resolve, issue, list and revoke credentials, over the boss's database."""

    def __init__(
        self,
        store: Store,
        admin: str,
        *,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._admin = admin.encode()
        # What a dashboard session logged in with this boss token records: a
        # new token (one that leaked, replaced) ends the old one's sessions.
        self.admin_session = f"{ADMIN}:{hashlib.sha256(self._admin).hexdigest()[:14]}"
        self.ttl = ttl
        self.clock = clock
        self._lock = threading.Lock()
        # sha256 -> (credential, when it was read, monotonic)
        self._cache: dict[str, tuple[Credential, float]] = {}
        # worker id -> (paths its attempts may read, when they were read)
        self._reads: dict[int, tuple[frozenset[str], float]] = {}
        # Workers whose tokens this boss ended: a sync of theirs held open stops.
        self._ended: set[int] = set()
        # Tokens this boss revoked: a held sync of a worker one registered stops too.
        self._revoked: set[int] = set()

    # -- resolving ---------------------------------------------------------

    def resolve(self, token: str) -> Credential | None:
        """The credential a token stands for; None if it is unknown, expired or revoked."""
        if not token or len(token) > 200:
            return None
        if hmac.compare_digest(token.encode("utf-8", "replace"), self._admin):
            return ADMIN_CREDENTIAL
        key = _digest(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[1] < self.ttl:
            cred = hit[0]
        else:
            found = self._read(key)
            if found is None:
                with self._lock:
                    self._cache.pop(key, None)
                return None
            cred = found
            with self._lock:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = (cred, now)
        if cred.expires is not None and cred.expires <= self.clock():
            return None
        return cred

    def _read(self, key: str) -> Credential | None:
        now = self.clock()
        with self.store.read() as tx:
            row = q.token_by_hash(tx, key)
        if row is None or row.revoked is not None or row.parent_revoked is not None:
            return None
        if row.expires is not None and row.expires <= now:
            return None
        # A per-worker token lives while the scheduler lets its worker sync: not once it stopped.
        if row.kind == PER_WORKER and row.worker_state in (None, "stopped"):
            return None
        if row.kind != PER_WORKER and (
            row.last_used is None or now - row.last_used > TOUCH_SECONDS
        ):
            with self.store.transaction() as tx:
                q.touch_token(tx, int(row.id), now)
        return Credential(
            kind=str(row.kind),
            name=str(row.name),
            worker_id=int(row.worker_id) if row.worker_id is not None else None,
            token_id=int(row.id),
            parent=int(row.parent) if row.parent is not None else None,
            expires=row.expires,
        )

    # -- issuing and revoking ----------------------------------------------

    def issue(self, name: str, kind: str, *, expires_in: float | None = None) -> str:
        """A new ``read`` or ``worker`` token named ``name``: returned once, stored hashed."""
        if not NAME.fullmatch(name):
            raise BadInput(
                f"token name '{name[:60]}' is not allowed: use up to 100 letters, digits, "
                "'_', '.', ':' or '-', starting with a letter or digit"
            )
        if kind not in ISSUED:
            raise BadInput(f"no token kind '{kind[:40]}': use {' or '.join(ISSUED)}")
        if expires_in is not None and not 0 < expires_in < 100 * 365 * 86400:
            raise BadInput("a token's lifetime must be more than 0 seconds and under 100 years")
        token = new_token()
        now = self.clock()
        with self.store.transaction() as tx:
            if q.live_token_named(tx, name):
                raise BadInput(
                    f"a token named '{name}' exists: revoke it first "
                    f"('shoal tokens revoke {name}') or choose another name"
                )
            q.insert_token(
                tx,
                {
                    "hash": _digest(token),
                    "name": name,
                    "kind": kind,
                    "created": now,
                    "expires": now + expires_in if expires_in is not None else None,
                },
            )
        return token

    def issue_for_worker(self, worker_id: int, worker_name: str, parent: Credential) -> str:
        """The token a newly registered worker syncs with from then on."""
        token = new_token()
        now = self.clock()
        with self.store.transaction() as tx:
            q.purge_tokens(tx, now - PURGE_SECONDS)
            q.insert_token(
                tx,
                {
                    "hash": _digest(token),
                    # '#' is in no name a user gives: no clash with theirs.
                    "name": f"worker#{worker_id}",
                    "kind": PER_WORKER,
                    "worker_id": worker_id,
                    "parent": parent.token_id,
                    "created": now,
                },
            )
        return token

    def revoke(self, name: str) -> None:
        """Refuse the token so named from now on (and the per-worker tokens it registered)."""
        with self.store.transaction() as tx:
            row = q.revoke_token(tx, name, self.clock())
            if row is not None:
                q.end_sessions(tx, session_kind(int(row.id)))
        if row is None:
            raise NotFound(f"no token named '{name[:100]}': 'shoal tokens ls' lists them")
        token_id = int(row.id)
        self._forget(lambda c: token_id in (c.token_id, c.parent))
        with self._lock:
            if len(self._revoked) >= CACHE_SIZE:
                self._revoked.clear()
            self._revoked.add(token_id)

    def revoke_worker(self, worker_id: int) -> None:
        """The worker stopped or is gone: its tokens end."""
        with self.store.transaction() as tx:
            q.revoke_worker_tokens(tx, worker_id, self.clock())
        self._forget(lambda c: c.worker_id == worker_id)
        with self._lock:
            self._reads.pop(worker_id, None)
            if len(self._ended) >= CACHE_SIZE:
                self._ended.clear()
            self._ended.add(worker_id)

    def ended(self, credential: Credential) -> bool:
        """Whether this boss ended a worker's own token: its worker stopped or is gone,
        or the token (or the one that registered its worker) was revoked."""
        if credential.worker_id is not None and credential.worker_id in self._ended:
            return True
        return bool({credential.token_id, credential.parent} & self._revoked)

    def _forget(self, which: Callable[[Credential], bool]) -> None:
        with self._lock:
            for key in [k for k, (c, _) in self._cache.items() if which(c)]:
                del self._cache[key]

    def listing(self, *, per_worker: bool = False) -> list[dict[str, Any]]:
        """Every token (without its secret): name, kind, created, expires, last used, revoked."""
        with self.store.read() as tx:
            rows = q.tokens(tx, per_worker=per_worker)
        return [
            {
                "name": r.name,
                "kind": r.kind,
                "worker": r.worker_id,
                "created": r.created,
                "expires": r.expires,
                "last_used": r.last_used,
                "revoked": r.revoked,
            }
            for r in rows
        ]

    # -- what a worker may read ---------------------------------------------

    def may_read(self, worker_id: int, path: str) -> bool:
        """Whether an attempt the worker runs needs this datastore path (an input, its bundle)."""
        now = time.monotonic()
        with self._lock:
            known = self._reads.get(worker_id)
        if known is not None and now - known[1] < self.ttl and path in known[0]:
            return True
        # New attempts since: read them again.
        with self.store.read() as tx:
            paths = frozenset(q.held_reads(tx, worker_id))
        with self._lock:
            if len(self._reads) >= CACHE_SIZE:
                self._reads.clear()
            self._reads[worker_id] = (paths, now)
        return path in paths


def token_routes(tokens: Tokens, max_body: int) -> list[BaseRoute]:
    """List, add and revoke tokens (the boss's token only: see ``ACCESS``)."""

    async def listed(request: Request) -> Response:
        every = request.query_params.get("all", "") in ("1", "true")
        return json_response(tokens.listing(per_worker=every))

    async def add(request: Request) -> Response:
        body = await read_json(request, max_body)
        name, kind, expires_in = body.get("name"), body.get("kind"), body.get("expires_in")
        if not isinstance(name, str) or not isinstance(kind, str):
            raise BadInput("a token needs a 'name' and a 'kind' (read or worker)")
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, int | float)
        ):
            raise BadInput("'expires_in' must be a number of seconds, or null")
        token = tokens.issue(name, kind, expires_in=expires_in)
        return json_response({"name": name, "kind": kind, "token": token})

    async def revoke(request: Request) -> Response:
        name = request.path_params["name"]
        tokens.revoke(name)
        return json_response({"revoked": name})

    v = p.API_PREFIX
    return [
        Route(f"{v}/tokens", listed, methods=["GET"]),
        Route(f"{v}/tokens", add, methods=["POST"]),
        Route(f"{v}/tokens/{{name}}", revoke, methods=["DELETE"]),
    ]

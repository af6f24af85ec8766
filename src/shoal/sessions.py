"""Dashboard sessions: what the login cookie stands for, kept in the database.

The cookie holds a random session id, never the boss's token; the database
holds only the id's sha256, so a reader of the database cannot act as a
logged-in user. Each session has a CSRF token of its own, which the
dashboard sends back with every change it asks for, and an expiry. Kept in
the database so that a restarted boss, or another boss on the same
PostgreSQL, knows the session too.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from shoal.store import Store

__all__ = ["SESSION_SECONDS", "Sessions"]

# How long a login lasts.
SESSION_SECONDS = 12 * 3600.0


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


class Sessions:
    """Open, look up and close dashboard sessions."""

    def __init__(
        self,
        store: Store,
        lifetime: float = SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.lifetime = lifetime
        self.clock = clock

    def open(self, kind: str | None = None, *, until: float | None = None) -> tuple[str, str]:
        """A new session: its id (for the cookie) and its CSRF token.

        ``kind``: what logged in (see :mod:`shoal.boss.auth`); ``until``:
        when the credential it logged in with ends, if before the lifetime.
        """
        session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = self.clock()
        ends = now + self.lifetime if until is None else min(until, now + self.lifetime)
        with self.store.transaction() as tx:
            tx.insert_session(_key(session_id), csrf, now, ends, kind)
        return session_id, csrf

    def lookup(self, session_id: str) -> tuple[str, str | None] | None:
        """The CSRF token and kind of a session that has not ended, or None."""
        if not session_id or len(session_id) > 200:
            return None
        with self.store.read() as tx:
            row = tx.session(_key(session_id), self.clock())
        return (str(row.csrf), row.kind) if row is not None else None

    def csrf(self, session_id: str) -> str | None:
        """The CSRF token of a session that has not ended, or None."""
        found = self.lookup(session_id)
        return found[0] if found is not None else None

    def close(self, session_id: str) -> None:
        with self.store.transaction() as tx:
            tx.delete_session(_key(session_id))

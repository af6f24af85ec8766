"""The command line's client of a running boss's HTTP API (standard library HTTP)."""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from shoal.agent.client import (
    CHUNK,
    AgentClient,
    BossDown,
    BossRefused,
    BossUntrusted,
    TlsFiles,
    token_from_environment,
)
from shoal.client.base import Client
from shoal.datastore.layout import bundle_path
from shoal.exceptions import BadInput, BossError, BossUnreachable, NotFound, Unauthorized
from shoal.spec import RunSpec
from shoal.spec.bundle import pack_bundle
from shoal.statedir import StateDir

__all__ = ["BossClient", "state_tls"]

# How long a submission is sent again while the boss does not answer.
SUBMIT_PATIENCE = 30.0


class BossClient(Client):
    """Calls a boss; turns its errors into :mod:`shoal.exceptions`."""

    def __init__(
        self, url: str, token: str, timeout: float = 30.0, tls: TlsFiles | None = None
    ) -> None:
        """``tls``: the boss's CA and our certificate (default: ``SHOAL_CA``, ``SHOAL_CERT``, ``SHOAL_KEY``)."""
        self.url = url.rstrip("/")
        self.token = token
        try:
            self.http = AgentClient(self.url, token, timeout=timeout, tls=tls)
        except ValueError as e:
            raise BadInput(str(e)) from None

    @classmethod
    def find(cls, boss: str | None, token: str | None, state: StateDir) -> BossClient:
        """The boss from ``--boss``, ``SHOAL_BOSS`` or the state folder, in that order."""
        url = boss or os.environ.get("SHOAL_BOSS")
        try:
            token = token or token_from_environment()
        except ValueError as e:
            raise BadInput(str(e)) from None
        if not url or not token:
            info = state.live_boss()
            if info is None:
                if url:
                    raise BadInput(
                        f"no token for the boss at {url}: pass --token or set SHOAL_TOKEN"
                    )
                raise BossUnreachable(
                    f"no boss is running for {state.root}: start one with 'shoal boss', "
                    "or pass --boss URL (or set SHOAL_BOSS)"
                )
            url = url or str(info["url"])
            token = token or str(info["token"])
        return cls(url, token, tls=state_tls(state))

    def close(self) -> None:
        self.http.drop_connection()

    def __enter__(self) -> BossClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _answers(self) -> Iterator[None]:
        """The agent client's errors as the command line's: unreachable, or refused."""
        try:
            yield
        except BossUntrusted as e:
            raise BossUnreachable(str(e)) from e
        except BossDown as e:
            raise BossUnreachable(f"cannot reach the boss at {self.url}: {e}") from e
        except BossRefused as e:
            raise _error(self.url, e) from None

    def _call(self, method: str, path: str, payload: Any = None) -> Any:
        with self._answers():
            return self.http.call(method, path, payload)

    def get(self, path: str, **params: Any) -> Any:
        query = urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)
        return self._call("GET", path + ("?" + query if query else ""))

    def post(self, path: str, body: Any = None) -> Any:
        return self._call("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Any:
        return self._call("PUT", path, body)

    # -- runs ------------------------------------------------------------

    def upload_bundle(self, folder: Path) -> str:
        """Send a bundle folder to the boss's datastore unless it has it; its digest."""
        digest, archive = pack_bundle(folder)
        try:
            path = bundle_path(digest)
            if path not in self.get("/data", prefix="bundles/"):
                with self._answers():
                    self.http.upload(path, str(archive))
        finally:
            archive.unlink(missing_ok=True)
        return digest

    def submit(self, spec: RunSpec) -> int:
        """Upload the run's bundle if the boss lacks it, then submit the run; its id.

        The submission carries an idempotency key and is sent again, with the
        same key, while the boss does not answer (a lost answer, a boss
        restarting): the boss makes the run once, whatever reached it.
        """
        digest = self.upload_bundle(spec.bundle) if spec.bundle is not None else None
        body = {"spec": spec.to_dict(), "bundle": digest, "source": spec.source}
        headers = {"Idempotency-Key": secrets.token_urlsafe(24)}
        deadline = time.monotonic() + SUBMIT_PATIENCE
        delay = 0.25
        first = True
        while True:
            try:
                with self._answers():
                    return int(self.http.call("POST", "/runs", body, headers=headers)["run"])
            except BossUnreachable as e:
                if first and _refused(e):
                    raise  # nothing reached a boss: there is nothing to ask again
                if time.monotonic() + delay > deadline:
                    raise BossUnreachable(
                        f"{e}; the run may have been stored: 'shoal status' shows it"
                    ) from None
            first = False
            time.sleep(delay)
            delay = min(5.0, delay * 2)

    def run(self, ref: str | int | None) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/runs/{_ref(ref)}")
        return result

    def runs(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/runs")
        return result

    def tasks(
        self, ref: str | int | None, states: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(
            f"/runs/{_ref(ref)}/tasks", state=list(states or []) or None
        )
        return result

    def task(self, ref: str | int | None, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/runs/{_ref(ref)}/tasks/{quote(name)}")
        return result

    def log_chunks(
        self,
        ref: str | int | None,
        name: str,
        attempt: int | None = None,
        tail: int | None = None,
    ) -> Iterator[bytes]:
        """A task's log (its last ``tail`` lines) in chunks as the boss sends it."""
        chunks, _ = self._log(ref, name, attempt=attempt, tail=tail)
        return chunks

    def log_from(
        self, ref: str | int | None, name: str, offset: int, tail: int | None = None
    ) -> tuple[bytes, str, bool, int]:
        """The log of the task's latest attempt from a byte offset (or its last ``tail`` lines).

        Also: its attempt number, whether it runs, and the offset the bytes start at.
        """
        chunks, resp = self._log(ref, name, offset=offset, tail=tail)
        data = b"".join(chunks)
        return (
            data,
            resp.getheader("X-Shoal-Attempt", ""),
            resp.getheader("X-Shoal-Running") == "true",
            int(resp.getheader("X-Shoal-Offset") or offset),
        )

    def _log(
        self, ref: str | int | None, name: str, **params: int | None
    ) -> tuple[Iterator[bytes], http.client.HTTPResponse]:
        query = urlencode([(k, v) for k, v in params.items() if v is not None])
        path = f"/runs/{_ref(ref)}/tasks/{quote(name)}/log" + ("?" + query if query else "")
        with self._answers():
            resp = self.http.stream(path)
        return self._chunks(resp), resp

    def _chunks(self, resp: http.client.HTTPResponse) -> Iterator[bytes]:
        done = False
        try:
            while chunk := resp.read(CHUNK):
                yield chunk
            done = True
        except (OSError, http.client.HTTPException) as e:
            raise BossUnreachable(f"the boss at {self.url} stopped sending: {e}") from e
        finally:
            if not done:
                self.http.drop_connection()  # a half-read answer spoils the connection

    def results(self, ref: str | int | None) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/runs/{_ref(ref)}/results")
        return result

    def cancel(self, ref: str | int) -> int:
        return int(self.post(f"/runs/{_ref(ref)}/cancel")["cancelled"])

    def retry(self, ref: str | int) -> int:
        return int(self.post(f"/runs/{_ref(ref)}/retry")["retried"])

    def cancel_task(self, ref: str | int, name: str) -> int:
        return int(self.post(f"/runs/{_ref(ref)}/tasks/{quote(name, safe='')}/cancel")["cancelled"])

    def retry_task(self, ref: str | int, name: str) -> int:
        return int(self.post(f"/runs/{_ref(ref)}/tasks/{quote(name, safe='')}/retry")["retried"])

    def order_worker(self, worker: str, order: str) -> dict[str, Any]:
        result: dict[str, Any] = self.post(f"/workers/{quote(worker, safe='')}/{order}")
        return result

    def workers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/workers")
        return result

    def events(self, ref: str | int | None) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/events", run=ref)
        return result

    def bosses(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/bosses")
        return result

    def machines(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/machines")
        return result

    # -- credentials -----------------------------------------------------

    def tokens(self, *, every: bool = False) -> list[dict[str, Any]]:
        """The boss's tokens (never their secrets); ``every``: its workers' own too."""
        result: list[dict[str, Any]] = self.get("/tokens", all="1" if every else None)
        return result

    def add_token(self, name: str, kind: str, expires_in: float | None = None) -> str:
        """A new ``read`` or ``worker`` token (the boss shows it this once)."""
        body = {"name": name, "kind": kind, "expires_in": expires_in}
        return str(self.post("/tokens", body)["token"])

    def revoke_token(self, name: str) -> None:
        self._call("DELETE", f"/tokens/{quote(name, safe='')}")

    def worker_lost(self, worker_id: int, reason: str) -> None:
        """Say a worker is gone (its machine was), so that its tasks run again at once."""
        self._call("POST", f"/workers/{worker_id}/lost?" + urlencode({"reason": reason}), {})

    def demand(self) -> dict[str, Any]:
        """What waits for a worker, and the workers there are (see ``Views.demand``)."""
        result: dict[str, Any] = self.get("/demand")
        return result


def state_tls(state: StateDir) -> TlsFiles | None:
    """The TLS files to use: ``SHOAL_CA``/``SHOAL_CERT``/``SHOAL_KEY``, else the state folder's.

    In the boss's own folder, that is its CA and the client certificate
    ``shoal certs init`` issued for the command line (``cli``).
    """
    given = TlsFiles.from_environment()
    if given is not None:
        return given
    certs = state.certs
    if not (certs / "ca.crt").exists():
        return None
    mine = (certs / "cli.crt").exists() and (certs / "cli.key").exists()
    return TlsFiles(
        str(certs / "ca.crt"),
        str(certs / "cli.crt") if mine else None,
        str(certs / "cli.key") if mine else None,
    )


def _refused(e: BaseException) -> bool:
    """Whether an error comes from a connection the boss's address refused."""
    cause: BaseException | None = e
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return True
        cause = cause.__cause__
    return False


def _ref(ref: str | int | None) -> str:
    return quote(str(ref)) if ref not in (None, "") else "latest"


def _error(url: str, e: BossRefused) -> Exception:
    if e.status == 401:
        return Unauthorized(f"the boss at {url} refused the token: {e.message}")
    if e.status == 404:
        return NotFound(e.message)
    if 400 <= e.status < 500:
        return BadInput(e.message)
    return BossError(f"the boss at {url} answered {e.status}: {e.message}")

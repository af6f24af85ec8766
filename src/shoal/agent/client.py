"""The agent's HTTP client: standard library only, keep-alive per thread."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, MutableMapping, NamedTuple, Optional
from urllib.parse import quote, urlencode, urlsplit

from shoal import protocol as p
from shoal.datastore.layout import DIGEST_HEADER, origin
from shoal.exceptions import BossError, BossUnreachable, Corrupt

CHUNK = 256 * 1024
# How long an upload is asked again while the boss cannot store it (503).
UPLOAD_PATIENCE = 300.0
UPLOAD_BACKOFF_MAX = 15.0

# The environment variables that carry a boss credential. A worker reads them
# once and removes them from its environment, so no task it runs inherits one.
CREDENTIAL_VARS = ("SHOAL_TOKEN", "SHOAL_TOKEN_FILE")


# The token file that means this process's standard input: how shoal's
# launchers hand an agent its token (never in the environment it is started
# with, which /proc/PID/environ shows its tasks for as long as it runs).
STDIN_TOKEN_FILES = ("/dev/stdin", "-")


def read_token_line(fd: int) -> str:
    """The first line on ``fd``, read byte by byte: what follows stays unread (a lifeline)."""
    line = b""
    while not line.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        line += byte
    return line.decode("utf-8", errors="replace").strip()


def read_token_file(path: str) -> str:
    """The token held in a file (its first line); ValueError with a clear line if none.

    ``/dev/stdin`` (or ``-``) is this process's standard input, of which only
    the token's line is read.
    """
    try:
        if path in STDIN_TOKEN_FILES:
            token = read_token_line(0)
        else:
            with open(os.path.expanduser(path), encoding="utf-8") as f:
                token = f.readline().strip()
    except OSError as e:
        raise ValueError(f"cannot read the token file {path}: {e.strerror or e}") from None
    if not token:
        if path in STDIN_TOKEN_FILES:
            raise ValueError("no token on standard input (--token-file=/dev/stdin)")
        raise ValueError(f"the token file {path} is empty")
    return token


def token_from_environment() -> Optional[str]:
    """The token in ``SHOAL_TOKEN``, else in the file ``SHOAL_TOKEN_FILE`` names."""
    token = os.environ.get("SHOAL_TOKEN")
    if token:
        return token
    path = os.environ.get("SHOAL_TOKEN_FILE")
    return read_token_file(path) if path else None


def drop_credentials(env: MutableMapping[str, str]) -> None:
    """Remove every boss credential variable from ``env`` (``os.environ`` included)."""
    for name in CREDENTIAL_VARS:
        env.pop(name, None)


def token_warning(option: str, safer: str) -> str:
    """The line that says a token given on the command line is seen by others."""
    return (
        f"warning: a token given with {option} shows in 'ps' to every user of this "
        f"machine; {safer} instead"
    )


class TlsFiles(NamedTuple):
    """The files a client verifies the boss with (``ca``) and proves itself with (``cert``, ``key``).

    Any may be None: no ``ca``, the system's authorities; no ``cert``, no
    client certificate (a boss under mutual TLS refuses the connection).
    """

    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None

    @classmethod
    def from_environment(cls) -> Optional[TlsFiles]:
        """``SHOAL_CA``, ``SHOAL_CERT`` and ``SHOAL_KEY``, if any is set."""
        files = cls(
            os.environ.get("SHOAL_CA") or None,
            os.environ.get("SHOAL_CERT") or None,
            os.environ.get("SHOAL_KEY") or None,
        )
        return files if any(files) else None

    def context(self) -> ssl.SSLContext:
        """A client context: the boss verified against ``ca``; ``cert`` presented.

        ValueError with one line for a file that is missing, unreadable, or a
        key that others may read.
        """
        try:
            ctx = ssl.create_default_context(
                cafile=os.path.expanduser(self.ca) if self.ca else None
            )
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"cannot load the CA certificate {self.ca}: {_reason(e)}") from None
        if self.cert or self.key:
            if not (self.cert and self.key):
                raise ValueError("a client certificate needs both --cert and --key")
            key = os.path.expanduser(self.key)
            try:
                mode = os.stat(key).st_mode & 0o777
            except OSError as e:
                raise ValueError(f"cannot read the key file {self.key}: {e.strerror}") from None
            if mode & 0o077:
                raise ValueError(
                    f"the key file {self.key} can be read by others (mode {mode:o}): "
                    f"chmod 600 {self.key}"
                )
            try:
                ctx.load_cert_chain(os.path.expanduser(self.cert), key)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(
                    f"cannot load the certificate {self.cert} with {self.key}: {_reason(e)}"
                ) from None
        return ctx


def _reason(e: BaseException) -> str:
    """An ssl or OS error's own words, without the ``[SSL: ...] (_ssl.c:123)`` wrapping."""
    if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
        return str(e.verify_message)
    if isinstance(e, ssl.SSLError) and e.reason:
        return str(e.reason).lower().replace("_", " ")
    if isinstance(e, OSError) and e.strerror:
        return str(e.strerror)
    return str(e)


def tls_failure(url: str, e: BaseException) -> Optional[str]:
    """The line that says why TLS with the boss failed, or None if it was no TLS error."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return (
            f"the boss at {url} has a certificate that does not verify: {_reason(e)} "
            "(give its CA with --ca or SHOAL_CA)"
        )
    if isinstance(e, ssl.SSLEOFError) or (
        isinstance(e, ssl.SSLError) and "alert" in str(e.reason or "").lower()
    ):
        why = _reason(e).replace("sslv3 alert ", "").replace("tlsv13 alert ", "")
        why = why.replace("tlsv1 alert ", "")
        if isinstance(e, ssl.SSLEOFError):
            why = "the connection was closed during the handshake"
        return (
            f"the boss at {url} refused this client's certificate ({why}): it needs one "
            "its CA issued, not expired nor revoked (--cert/--key or SHOAL_CERT/SHOAL_KEY)"
        )
    return None


class BossDown(BossUnreachable):
    """The boss did not answer (connection refused, reset, timed out)."""


class BossUntrusted(BossDown):
    """TLS with the boss failed: its certificate did not verify, or it refused ours."""


class BossRefused(BossError):
    """The boss answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Boss:
    """One boss URL, taken apart."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else "http://" + url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"the boss URL must start with http:// or https://: {url}")
        self.url = url
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.base = parts.path.rstrip("/")

    def connect(
        self, timeout: float, context: Optional[ssl.SSLContext] = None
    ) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=context
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


class AgentClient:
    """Talks to a boss; each thread keeps its own connection open.

    ``url`` may name several bosses serving one database, separated by
    commas: a request that cannot reach one goes to the next.

    ``token`` is the credential it was given (a worker token, or the boss's
    own); once registered, it sends the token the boss issued to its worker
    instead, and keeps the first only to register again. Both stay in memory.
    """

    def __init__(
        self, url: str, token: str, timeout: float = 60.0, tls: Optional[TlsFiles] = None
    ) -> None:
        self.bosses = [_Boss(u.strip()) for u in url.split(",") if u.strip()]
        if not self.bosses:
            raise ValueError("no boss URL given")
        # For an https boss: its CA, and this client's certificate (``tls``,
        # else SHOAL_CA, SHOAL_CERT and SHOAL_KEY). ValueError if unusable.
        self.tls = tls if tls is not None else TlsFiles.from_environment()
        self._context: Optional[ssl.SSLContext] = None
        if any(b.https for b in self.bosses):
            self._context = (self.tls or TlsFiles()).context()
        self._active = 0
        self.credential = token
        self.token = token
        self.timeout = timeout
        self._local = threading.local()
        self._sync_conn: Optional[http.client.HTTPConnection] = None
        self._aborted = False
        # Set for a long poll only: whether the worker began to stop meanwhile.
        self._broken_off: Optional[Callable[[], bool]] = None

    @property
    def url(self) -> str:
        """The URL of the boss requests go to now."""
        return self.bosses[self._active].url

    @property
    def base(self) -> str:
        return self.bosses[self._active].base

    def _conn(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "boss", None) != self._active:
            conn.close()  # another boss took over since this thread's last request
            conn = None
        if conn is None:
            conn = self.bosses[self._active].connect(timeout, self._context)
            self._local.conn = conn
            self._local.boss = self._active
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _fail_over(self) -> bool:
        """Send further requests to the next boss; False when there is only one."""
        if len(self.bosses) == 1:
            return False
        failed = getattr(self._local, "boss", self._active)
        if failed == self._active:
            self._active = (failed + 1) % len(self.bosses)
        return True

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @property
    def own_token(self) -> bool:
        """Whether requests carry the token the boss issued to this worker."""
        return self.token != self.credential

    def _headers(
        self, extra: Optional[Dict[str, str]] = None, token: Optional[str] = None
    ) -> Dict[str, str]:
        headers = {"Authorization": "Bearer " + (token or self.token)}
        if extra:
            headers.update(extra)
        return headers

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
        token: Optional[str] = None,
    ) -> http.client.HTTPResponse:
        tries = 1 + len(self.bosses)
        for attempt in range(1, tries + 1):
            conn = self._conn(timeout or self.timeout)
            fresh = conn.sock is None
            url = self.base + path
            try:
                self._check_broken_off()
                conn.request(method, url, body=body, headers=self._headers(headers, token))
                # A stop that came while it connected found no socket to shut.
                self._check_broken_off()
                return conn.getresponse()
            except (
                http.client.RemoteDisconnected,
                BrokenPipeError,
                ConnectionResetError,
                http.client.CannotSendRequest,
                http.client.ResponseNotReady,
            ) as e:
                # A kept-alive connection the server closed, or one an
                # interrupted request left half-used: retry once afresh (on
                # the next boss, if there are several), unless the body was
                # a stream we cannot send twice.
                where = self.url
                if attempt > 1:
                    self._fail_over()
                self.drop_connection()
                if attempt == tries or hasattr(body, "read") or self._aborted:
                    if fresh and where.startswith("https://"):
                        # Under TLS 1.3 a refused client certificate shows so.
                        raise BossUntrusted(self._closed_at_once(where)) from e
                    raise BossDown(f"{where}: {e}") from e
            except (OSError, http.client.HTTPException) as e:
                # Refused, unreachable, timed out: try the next boss, if any.
                where = self.url
                more = self._fail_over()
                self.drop_connection()
                if (
                    not more
                    or attempt >= len(self.bosses)
                    or self._aborted
                    or hasattr(body, "read")
                ):
                    why = tls_failure(where, e)
                    if why is not None:
                        raise BossUntrusted(why) from e
                    raise BossDown(f"{where}: {e}") from e
            except BaseException:
                # Interrupted (Ctrl-C) mid-request: the connection is in an
                # unknown state; the next request opens a new one.
                self.drop_connection()
                raise
        raise BossDown(self.url)  # pragma: no cover - the loop returns or raises

    def _closed_at_once(self, url: str) -> str:
        """Why an https boss closes a new connection before it answers: our certificate."""
        start = f"the boss at {url} closed the connection before answering: under --mtls it "
        if self.tls is None or not self.tls.cert:
            return (
                start + "needs a client certificate its CA issued, and this client presents "
                "none (--cert/--key or SHOAL_CERT/SHOAL_KEY)"
            )
        return (
            start + f"refuses this client's certificate {self.tls.cert}: it takes only one "
            "its CA issued, neither expired nor revoked ('shoal certs ls' on the boss)"
        )

    def _check(self, resp: http.client.HTTPResponse) -> bytes:
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self.drop_connection()
            raise BossDown(f"{self.url}: {e}") from e
        if resp.status >= 400:
            message = data.decode("utf-8", "replace")
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(message).get("error", message)
            raise BossRefused(resp.status, message)
        return data

    def call(
        self,
        method: str,
        path: str,
        payload: Any = None,
        timeout: Optional[float] = None,
        headers: Optional[Dict[str, str]] = None,
        token: Optional[str] = None,
    ) -> Any:
        body = None if payload is None else json.dumps(payload, separators=(",", ":")).encode()
        sent = dict(headers or {})
        if body is not None:
            sent["Content-Type"] = "application/json"
        resp = self._send(method, p.API_PREFIX + path, body, sent or None, timeout, token)
        data = self._check(resp)
        return json.loads(data) if data else None

    def stream(self, path: str) -> http.client.HTTPResponse:
        """``GET`` an answer to read as it comes (a file, a log); BossRefused for an error.

        Read it to its end, or call :meth:`drop_connection`: a half-read
        answer spoils the connection for the next request.
        """
        resp = self._send("GET", p.API_PREFIX + path)
        if resp.status >= 400:
            self._check(resp)
        return resp

    # -- the protocol ----------------------------------------------------

    def register(self, reg: p.Registration) -> p.Registered:
        """Register with the credential given; then send the token issued to the worker."""
        answer = p.Registered.from_dict(
            self.call("POST", "/workers", reg.to_dict(), token=self.credential)
        )
        self.token = answer.token or self.credential
        return answer

    def sync(
        self, req: p.SyncRequest, broken_off: Optional[Callable[[], bool]] = None
    ) -> p.SyncResponse:
        """One sync. ``broken_off``: asked before the request goes and once it has gone;
        True ends the sync there (BossDown), as :meth:`abort_sync` ends one waiting
        for its answer. A signal handler that asks for a stop just before a long
        poll so never leaves the worker waiting out the poll."""
        timeout = self.timeout + req.wait
        self._sync_conn = self._conn(timeout)
        self._aborted = False
        self._broken_off = broken_off
        try:
            return p.SyncResponse.from_dict(
                self.call("POST", "/sync", req.to_dict(), timeout=timeout)
            )
        finally:
            self._sync_conn = None
            self._aborted = False
            self._broken_off = None

    def _check_broken_off(self) -> None:
        if self._broken_off is not None and self._broken_off():
            self._aborted = True
            raise BossDown(f"{self.url}: the sync was broken off (the worker stops)")

    def abort_sync(self) -> None:
        """Break off a sync in progress (from another thread or a signal handler)."""
        self._aborted = True
        conn = self._sync_conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def goodbye(self, worker_id: int, reason: str = "") -> None:
        query = "?" + urlencode({"reason": reason}) if reason else ""
        self.call("DELETE", f"/workers/{worker_id}{query}", timeout=5)

    # -- the datastore ---------------------------------------------------

    def download(self, path: str, dest: str) -> int:
        """Fetch a datastore file to ``dest``, streamed; its size.

        What arrived is checked against the sha256 the datastore recorded when
        the file was written (sent with it): Corrupt, and nothing at ``dest``,
        if it does not match.
        """
        resp = self.stream("/data/" + quote(path))
        recorded = [d for d in (resp.getheader(DIGEST_HEADER) or "").split(",") if d]
        parent = os.path.dirname(dest)
        if parent:
            os.makedirs(parent, exist_ok=True)
        tmp = dest + ".part"
        size = 0
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            if recorded and digest.hexdigest() not in recorded:
                os.unlink(tmp)
                raise Corrupt(
                    f"'{path}' ({origin(path)}) is corrupt: it arrived with sha256 "
                    f"{digest.hexdigest()[:16]}, the datastore recorded {recorded[0][:16]} "
                    "when it was written"
                )
            os.replace(tmp, dest)
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            self.drop_connection()
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise BossDown(f"download of {path} failed: {e}") from e
        return size

    def upload(self, path: str, source: str) -> None:
        """Send a local file to a datastore path (a bundle, an input), streamed."""
        self._put_file(p.API_PREFIX + "/data/" + quote(path), source)

    def upload_output(self, attempt_id: int, name: str, source: str) -> None:
        """Send one output of a running attempt; the boss refuses it (409) once fenced."""
        self._put_file(f"{p.API_PREFIX}/attempts/{attempt_id}/outputs/{quote(name)}", source)

    def upload_log(self, attempt_id: int, source: str, patient: bool = True) -> None:
        """Send an attempt's log (whole; or, not ``patient``, so far: tried once)."""
        self._put_file(f"{p.API_PREFIX}/attempts/{attempt_id}/log", source, patient)

    def _put_file(self, url_path: str, source: str, patient: bool = True) -> None:
        """PUT a file, streamed; asked again, backing off, while the boss cannot store it (503).

        A boss whose datastore is read-only or full for a while loses no
        finished work: the upload goes through once it can write again, or
        fails after UPLOAD_PATIENCE seconds.
        """
        deadline = time.monotonic() + UPLOAD_PATIENCE
        delay = 0.5
        while True:
            try:
                self._put_once(url_path, source)
                return
            except BossRefused as e:
                if (
                    not patient
                    or e.status != 503
                    or time.monotonic() + delay > deadline
                    or self._aborted
                ):
                    raise
            time.sleep(delay)
            delay = min(UPLOAD_BACKOFF_MAX, delay * 2)

    def _put_once(self, url_path: str, source: str) -> None:
        size = os.path.getsize(source)
        for attempt in range(len(self.bosses)):
            with open(source, "rb") as f:
                try:
                    resp = self._send(
                        "PUT",
                        url_path,
                        body=f,
                        headers={
                            "Content-Length": str(size),
                            "Content-Type": "application/octet-stream",
                        },
                    )
                except BossDown:
                    # A stream is not sent twice by _send: open the file
                    # again for the next boss, if there is one.
                    if attempt == len(self.bosses) - 1 or not self._fail_over():
                        raise
                    continue
            self._check(resp)
            return

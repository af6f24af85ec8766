"""The boss's side of TLS: HTTPS, and with mutual TLS the clients its CA vouches for.

Under mutual TLS a client must present a certificate the CA signed, not
expired, and not on the CA's revocation list. ``shoal certs revoke`` writes
a new list, and the boss refuses the certificate from then on, without a
restart, in two places:

* at a handshake: OpenSSL calls the server-name callback at every
  ClientHello, SNI or none, and there, when the list's file changed, the
  connection is handed a fresh context that loaded it;
* on a connection already open (a worker keeps its own alive): before each
  request is read, the connection's certificate is looked up in the list;
  a revoked one's connection is closed. A request held open (a worker's
  sync waiting for work) reads nothing more: :meth:`ServerTls.close_revoked`,
  which the boss calls every tick, closes its connection.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import weakref
from typing import Any

from cryptography import x509

from shoal.security.certs import BOSS_CERT, CertAuthority, default_hosts

__all__ = ["ServerTls", "boss_certificate"]


class ServerTls:
    """The boss's TLS: its certificate ``name``; with ``mtls``, its clients' checked."""

    def __init__(self, ca: CertAuthority, name: str = BOSS_CERT, *, mtls: bool) -> None:
        self.ca = ca
        self.name = name
        self.mtls = mtls
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self.revoked: frozenset[int] = frozenset()
        # The connections open now, with their client certificate's serial.
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()
        self._current = self._build()
        # The context the server listens with; it hands each handshake the current one.
        self.context = self._current
        self.context.sni_callback = self._hello

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.ca.crl)
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.ca.cert_path(self.name)), str(self.ca.key_path(self.name)))
        if self.mtls:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(self.ca.ca_cert))
            self._seen = self._stamp()
            if self._seen is not None:
                ctx.load_verify_locations(cafile=str(self.ca.crl))
                ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
                crl = x509.load_pem_x509_crl(self.ca.crl.read_bytes())
                self.revoked = frozenset(r.serial_number for r in crl)
        return ctx

    def current(self) -> ssl.SSLContext:
        """The context for a new handshake: rebuilt if the revocation list changed."""
        if self.mtls and self._stamp() != self._seen:
            with self._lock:
                if self._stamp() != self._seen:
                    self._current = self._build()
        return self._current

    def _hello(self, conn: Any, server_name: str | None, _: ssl.SSLContext) -> None:
        ctx = self.current()
        if ctx is not self.context:
            conn.context = ctx

    def refuses(self, serial: int | None) -> bool:
        """Whether a connection with a client certificate of this serial is to be closed now."""
        if not self.mtls:
            return False
        self.current()
        return serial is None or serial in self.revoked

    def close_revoked(self) -> None:
        """Close the open connections whose certificate was revoked since they were made."""
        if not self.mtls:
            return
        for connection in list(self._open):
            if self.refuses(connection.serial):
                connection.transport.close()

    def protocol(self) -> type[asyncio.Protocol]:
        """uvicorn's HTTP protocol, checking the client's certificate before each request."""
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        tls = self

        class CheckedProtocol(HttpToolsProtocol):
            serial: int | None = None

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                ssl_object = transport.get_extra_info("ssl_object")
                cert = ssl_object.getpeercert() if ssl_object is not None else None
                if cert and cert.get("serialNumber"):
                    self.serial = int(str(cert["serialNumber"]), 16)
                super().connection_made(transport)
                tls._open.add(self)

            def data_received(self, data: bytes) -> None:
                if tls.refuses(self.serial):
                    self.transport.close()
                    return
                super().data_received(data)

        return CheckedProtocol


def boss_certificate(ca: CertAuthority, hosts: list[str]) -> list[str]:
    """Make the CA and the boss's certificate (for ``hosts`` too) where missing; what was done.

    Lines to tell the user: what was made, or that the certificate there
    does not name a host it will be reached at.
    """
    said: list[str] = []
    if not ca.exists():
        ca.init()
        said.append(f"made a certificate authority in {ca.folder} ('shoal certs ls' lists it)")
    wanted = list(dict.fromkeys([*default_hosts(), *hosts]))
    if ca.current(BOSS_CERT) is None or not ca.cert_path(BOSS_CERT).exists():
        ca.add(BOSS_CERT, hosts=wanted)
        said.append(f"issued the boss's certificate for {', '.join(wanted)}")
        return said
    cert = x509.load_pem_x509_certificate(ca.cert_path(BOSS_CERT).read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        named = {str(n) for n in sans.get_values_for_type(x509.DNSName)}
        named |= {str(n) for n in sans.get_values_for_type(x509.IPAddress)}
    except x509.ExtensionNotFound:
        named = set()
    missing = [h for h in hosts if h not in named]
    if missing:
        said.append(
            f"warning: the boss's certificate does not name {', '.join(missing)}: clients "
            f"reaching it there will refuse it ('shoal certs revoke {BOSS_CERT}' and start "
            "the boss again to issue a new one)"
        )
    return said

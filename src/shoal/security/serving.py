"""The boss's side of TLS: HTTPS, and with mutual TLS the clients its CA vouches for.

Under mutual TLS a client must present a certificate the CA signed, not
expired, and not on the CA's revocation list. ``shoal certs revoke`` writes
a new list; the boss takes it for the next handshake without a restart:
OpenSSL calls the server-name callback at every ClientHello, SNI or none,
and there, when the list's file changed, the connection is handed a fresh
context that loaded it (one context per version of the list).
"""

from __future__ import annotations

import os
import ssl
import threading
from pathlib import Path

from cryptography import x509

from shoal.security.certs import BOSS_CERT, CertAuthority, default_hosts

__all__ = ["CrlWatch", "boss_certificate", "key_mode_problem", "server_context"]


class CrlWatch:
    """Contexts for the boss's certificate, the newest one built from the current list."""

    def __init__(self, ca: CertAuthority, name: str, mtls: bool) -> None:
        self.ca = ca
        self.name = name
        self.mtls = mtls
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self.context = self._build()
        self.first = self.context
        self.first.sni_callback = self._hello

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
        return ctx

    def current(self) -> ssl.SSLContext:
        """The context for a new handshake: rebuilt if the revocation list changed."""
        if self.mtls and self._stamp() != self._seen:
            with self._lock:
                if self._stamp() != self._seen:
                    self.context = self._build()
        return self.context

    def _hello(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        ctx = self.current()
        if ctx is not self.first:
            conn.context = ctx


def server_context(ca: CertAuthority, name: str, *, mtls: bool) -> ssl.SSLContext:
    """The boss's SSL context: its certificate ``name``; with ``mtls``, clients verified."""
    return CrlWatch(ca, name, mtls).first


def key_mode_problem(path: Path) -> str | None:
    """Why a private key file is not safe to use (others may read it), or None."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return f"the key file {path} can be read by others (mode {mode:o}): chmod 600 {path}"
    return None


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

"""``shoal certs``: a certificate authority in the state folder, and what it issued.

``STATE/certs/`` (mode 0700) holds the CA (``ca.crt``, ``ca.key``), one
``NAME.crt`` and ``NAME.key`` per certificate issued, ``index.json`` (serial,
name, kind, expiry, revoked) and ``crl.pem``, the revocation list the CA
signs, written again at every revocation. Keys are ECDSA P-256, written 0600
as they are made. A server certificate names its hosts (DNS names or IP
addresses); a client certificate names a worker or a user.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import getpass
import ipaddress
import json
import os
import re
import socket
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shoal.exceptions import BadInput
from shoal.statedir import write_private

__all__ = [
    "BOSS_CERT",
    "CLI_CERT",
    "DEFAULT_DAYS",
    "EXPIRY_WARNING_DAYS",
    "CertAuthority",
    "Issued",
    "default_hosts",
]

DEFAULT_DAYS = 365
CA_DAYS = 3650
EXPIRY_WARNING_DAYS = 30
# The boss's own server certificate, and the client certificate of the
# command line run in the boss's folder (made by ``shoal certs init``).
BOSS_CERT = "boss"
CLI_CERT = "cli"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESERVED = {"ca", "crl", "index"}
_DNS = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9*]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*\.?$")


@dataclass(frozen=True)
class Issued:
    """One certificate the CA issued, as the index records it."""

    name: str
    kind: str  # "server" or "client"
    serial: int
    not_after: float  # epoch seconds
    hosts: tuple[str, ...] = ()
    revoked: float | None = None  # when, if it was

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / 86400


def default_hosts() -> list[str]:
    """What a server certificate names unless told: this machine's name, and loopback."""
    return [socket.gethostname(), "localhost", "127.0.0.1"]


def _san(host: str) -> x509.GeneralName:
    """A subject alternative name: an IP address, else a DNS name; BadInput if neither."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not _DNS.match(host):
        raise BadInput(f"bad --host '{host}': give a DNS name or an IP address, e.g. boss.lan")
    return x509.DNSName(host.rstrip("."))


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


class CertAuthority:
    """The CA of one state folder's ``certs`` folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def crl(self) -> Path:
        return self.folder / "crl.pem"

    @property
    def index(self) -> Path:
        return self.folder / "index.json"

    def cert_path(self, name: str) -> Path:
        return self.folder / f"{name}.crt"

    def key_path(self, name: str) -> Path:
        return self.folder / f"{name}.key"

    def exists(self) -> bool:
        return self.ca_cert.exists() and self.ca_key.exists()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change to the folder at a time, whatever process makes it."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        fd = os.open(self.folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- the CA ----------------------------------------------------------

    def init(self, *, now: float | None = None) -> bool:
        """Make the CA, its empty revocation list and the command line's client certificate.

        False if there was one already (nothing is changed then).
        """
        with self._locked():
            if self.exists():
                return False
            when = _utc(now if now is not None else dt.datetime.now(dt.timezone.utc).timestamp())
            key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, f"shoal CA {socket.gethostname()}")]
            )
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(when - dt.timedelta(minutes=5))
                .not_valid_after(when + dt.timedelta(days=CA_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        key_cert_sign=True,
                        crl_sign=True,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(
                    x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
                )
                .sign(key, hashes.SHA256())
            )
            write_private(self.ca_key, _key_pem(key))
            write_private(self.ca_cert, cert.public_bytes(serialization.Encoding.PEM).decode())
            self._write_index([])
            self._write_crl([])
        self.add(CLI_CERT, client=True, user=getpass.getuser())
        return True

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        if not self.exists():
            raise BadInput(
                f"no certificate authority in {self.folder}: run 'shoal certs init' first"
            )
        cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    # -- issuing ---------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        hosts: Sequence[str] = (),
        client: bool = False,
        days: int = DEFAULT_DAYS,
        now: float | None = None,
        user: str | None = None,
    ) -> Issued:
        """Issue a certificate: a server's for ``hosts`` (default: :func:`default_hosts`), or a client's.

        ``now`` (a test's): when it starts, so that it can be made already expired.
        """
        if not _NAME.match(name) or name in _RESERVED:
            raise BadInput(
                f"bad certificate name '{name}': letters, digits, '.', '_', '-' (not ca, crl, index)"
            )
        if days < 1:
            raise BadInput(f"bad --days {days}: a certificate lasts at least 1 day")
        if client and hosts:
            raise BadInput("--host is for a server certificate: leave it out with --client")
        names = [_san(h) for h in (hosts or ([] if client else default_hosts()))]
        with self._locked():
            ca, ca_key = self._load_ca()
            entries = self._read_index()
            if any(e.name == name and e.revoked is None for e in entries):
                raise BadInput(
                    f"a certificate named '{name}' was issued already: "
                    f"'shoal certs revoke {name}' first to issue it again"
                )
            start = _utc(now if now is not None else dt.datetime.now(dt.timezone.utc).timestamp())
            end = start + dt.timedelta(days=days)
            key = ec.generate_private_key(ec.SECP256R1())
            usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
            subject = [x509.NameAttribute(NameOID.COMMON_NAME, name)]
            if user:
                subject.append(x509.NameAttribute(NameOID.USER_ID, user))
            builder = (
                x509.CertificateBuilder()
                .subject_name(x509.Name(subject))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start - dt.timedelta(minutes=5))
                .not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                    critical=False,
                )
            )
            if names:
                builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            write_private(self.key_path(name), _key_pem(key))
            write_private(
                self.cert_path(name), cert.public_bytes(serialization.Encoding.PEM).decode()
            )
            issued = Issued(
                name=name,
                kind="client" if client else "server",
                serial=cert.serial_number,
                not_after=end.timestamp(),
                hosts=tuple(hosts or ([] if client else default_hosts())),
            )
            self._write_index([*entries, issued])
        return issued

    def issued(self) -> list[Issued]:
        """Every certificate issued, revoked ones included, oldest first."""
        return self._read_index()

    def current(self, name: str) -> Issued | None:
        """The certificate of that name that is not revoked, if there is one."""
        for e in self._read_index():
            if e.name == name and e.revoked is None:
                return e
        return None

    # -- revoking --------------------------------------------------------

    def revoke(self, name: str) -> Issued:
        """Revoke the certificate of that name: the revocation list refuses it from now on."""
        with self._locked():
            self._load_ca()
            entries = self._read_index()
            found = next((e for e in entries if e.name == name and e.revoked is None), None)
            if found is None:
                raise BadInput(
                    f"no certificate named '{name}' to revoke: 'shoal certs ls' lists them"
                )
            now = dt.datetime.now(dt.timezone.utc).timestamp()
            revoked = Issued(**{**asdict(found), "revoked": now})
            entries = [revoked if e is found else e for e in entries]
            self._write_index(entries)
            self._write_crl([e for e in entries if e.revoked is not None])
            # Its files go: what was revoked is never handed out again.
            for path in (self.key_path(name), self.cert_path(name)):
                path.unlink(missing_ok=True)
        return revoked

    def _write_crl(self, revoked: Sequence[Issued]) -> None:
        ca, ca_key = self._load_ca()
        now = dt.datetime.now(dt.timezone.utc)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.subject)
            .last_update(now - dt.timedelta(minutes=5))
            # Lasts as long as the CA: a list that expired would refuse every client.
            .next_update(ca.not_valid_after_utc)
        )
        for e in revoked:
            assert e.revoked is not None
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(e.serial)
                .revocation_date(_utc(e.revoked))
                .build()
            )
        crl = builder.sign(ca_key, hashes.SHA256())
        write_private(self.crl, crl.public_bytes(serialization.Encoding.PEM).decode())

    # -- the index -------------------------------------------------------

    def _read_index(self) -> list[Issued]:
        try:
            data = json.loads(self.index.read_text())
        except FileNotFoundError:
            return []
        except ValueError as e:
            raise BadInput(
                f"{self.index} is damaged ({e}): restore it or run 'shoal certs init' in a fresh folder"
            ) from None
        return [Issued(**{**d, "hosts": tuple(d.get("hosts", ()))}) for d in data]

    def _write_index(self, entries: Sequence[Issued]) -> None:
        write_private(self.index, json.dumps([asdict(e) for e in entries], indent=1) + "\n")


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()

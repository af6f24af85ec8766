"""Listening addresses: parsing ``--listen`` and binding before the server starts.

Standard library only, so ``shoal run`` can bind its port and start workers
while the heavier boss modules are still being imported.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket

from shoal.exceptions import BadInput

__all__ = ["bind", "is_loopback", "parse_listen", "real_address", "url_of"]


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


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise BadInput(
            f"cannot listen on {host}:{port}: {e.strerror} (choose another --listen)"
        ) from None
    sock.listen(1024)
    return sock


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is this machine's loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(f[4][0]).is_loopback for f in found)


def real_address(host: str) -> str:
    """``host``, or for a wildcard (``0.0.0.0``, ``::``) an address of this machine others reach.

    The address of the interface the default route leaves by (a UDP socket
    "connected" to a documentation address: nothing is sent), else the one
    the machine's name resolves to, else loopback.
    """
    if host not in ("0.0.0.0", "::", ""):
        return host
    six = host == "::"
    probe = ("2001:db8::1", 9) if six else ("192.0.2.1", 9)
    family = socket.AF_INET6 if six else socket.AF_INET
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(probe)
        return str(s.getsockname()[0])
    with contextlib.suppress(OSError):
        return socket.gethostbyname(socket.gethostname())
    return "::1" if six else "127.0.0.1"


def url_of(sock: socket.socket, *, https: bool = False) -> str:
    """The URL a listening socket is reached at, a real address in place of a wildcard."""
    host, port = sock.getsockname()[:2]
    host = real_address(host)
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if https else 'http'}://{host}:{port}"

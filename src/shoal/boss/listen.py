"""Listening addresses: parsing ``--listen`` and binding before the server starts.

Standard library only, so ``shoal run`` can bind its port and start workers
while the heavier boss modules are still being imported.
"""

from __future__ import annotations

import socket

from shoal.exceptions import BadInput

__all__ = ["bind", "parse_listen", "url_of"]


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


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"

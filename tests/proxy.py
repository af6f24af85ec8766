"""A TCP proxy on loopback that a test can slow down, and that can lose one answer.

Between a worker (or the command line) and the boss, it plays the network a
test needs: a slow link (``throttle`` bytes a second from client to boss), or
an answer lost after the boss has acted on the request (``drop_answers``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Proxy:
    """Forwards 127.0.0.1:<port> to ``target``, one pair of threads per connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.throttle: int | None = None  # bytes a second, client to boss
        self.drop_answers = 0  # answers to swallow (closing the client's connection)
        self.requests = 0  # connections that sent something
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._lock = threading.Lock()
        self._spawn(self._accept)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                boss = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, boss]
            self._spawn(self._pump, client, boss, True)
            self._spawn(self._pump, boss, client, False)

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        counted = False
        try:
            while True:
                limit = self.throttle if upstream else None
                data = src.recv(max(1, limit // 10) if limit else 65536)
                if not data:
                    break
                if upstream and not counted:
                    counted = True
                    with self._lock:
                        self.requests += 1
                if not upstream and self.drop_answers > 0:
                    # The boss answered; the client never hears it.
                    with self._lock:
                        self.drop_answers -= 1
                    break
                dst.sendall(data)
                if limit:
                    time.sleep(0.1)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()
        for thread in self._threads:
            thread.join(5)

"""The plain OpenSSH client, one host of an inventory at a time.

Every host gets one master connection (``ControlMaster``) that the other
ssh commands share, so checking for the agent, copying it and starting the
worker cost one handshake. ssh itself reads the user's ``~/.ssh/config``:
aliases, ``ProxyJump`` and keys work as they do for ``ssh HOST``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from shoal.exceptions import ShoalError
from shoal.spec.inventory import Host

__all__ = ["CONNECT_TIMEOUT", "REMOTE_ROOT", "SshFailed", "SshHost", "each_host", "ssh_error"]

REMOTE_ROOT = "$HOME/.shoal"
_T = TypeVar("_T")
_R = TypeVar("_R")
CONNECT_TIMEOUT = 10


def each_host(call: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``call`` on every item at once (one thread each: ssh mostly waits); results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(call, items))


def ssh_error(stderr: str) -> str:
    """ssh's own error line: the last line that is not a warning about known hosts."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("Warning: Permanently added")
    ]
    return lines[-1] if lines else "ssh failed"


def _control_dir() -> Path:
    # Control sockets need a short path (a Unix socket path is at most 108 bytes).
    path = Path(tempfile.gettempdir()) / f"shoal-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class SshHost:
    """The OpenSSH client for one host of an inventory."""

    def __init__(self, host: Host) -> None:
        self.host = host
        key = f"{host.destination}:{host.port}:{host.identity}:{host.ssh_options}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        self.control = _control_dir() / digest

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def address(self) -> str:
        return self.host.address

    def command_argv(self, command: str, *, tty: bool) -> list[str]:
        """ssh running ``command`` on the host, on a connection of its own (``tty``: ``-t``)."""
        return [*self.argv(*(["-t"] if tty else []), master=False), command]

    def argv(self, *extra: str, master: bool = True) -> list[str]:
        h = self.host
        argv = [
            "ssh",
            *("-o", "BatchMode=yes"),
            *("-o", f"ConnectTimeout={CONNECT_TIMEOUT}"),
            *("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"),
        ]
        if master:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}"]
            argv += ["-o", "ControlPersist=60"]
        if h.port:
            argv += ["-p", str(h.port)]
        if h.identity:
            argv += ["-i", h.identity, "-o", "IdentitiesOnly=yes"]
        return [*argv, *h.ssh_options, *extra, h.destination]

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a shell command on the host; ssh's exit status 255 means ssh failed."""
        return subprocess.run(
            [*self.argv(), command],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
        )

    def ensure_agent(self, pyz: Path) -> tuple[str, bool]:
        """The agent's path on the host, copied there if missing; and whether it was copied."""
        remote = f"{REMOTE_ROOT}/agent/{pyz.name}"
        have = self.run(f'test -f "{remote}" && echo have || echo need')
        if have.returncode != 0:
            raise SshFailed(self.host.name, ssh_error(have.stderr.decode(errors="replace")))
        if have.stdout.strip() == b"have":
            return remote, False
        sent = self.run(
            f'mkdir -p "{REMOTE_ROOT}/agent" && cat > "{remote}.$$" && mv "{remote}.$$" "{remote}"',
            stdin=pyz.read_bytes(),
        )
        if sent.returncode != 0:
            raise SshFailed(self.host.name, ssh_error(sent.stderr.decode(errors="replace")))
        return remote, True

    def close(self) -> None:
        """End the master connection."""
        subprocess.run(
            ["ssh", "-o", f"ControlPath={self.control}", "-O", "exit", self.host.destination],
            capture_output=True,
            timeout=10,
        )


class SshFailed(ShoalError):
    def __init__(self, host: str, line: str) -> None:
        super().__init__(f"{host}: {line}")
        self.host = host
        self.line = line

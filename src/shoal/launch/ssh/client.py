"""The plain OpenSSH client, one host of an inventory at a time.

Every host gets one master connection (``ControlMaster``) that the other
ssh commands share, so checking for the agent, copying it and starting the
worker cost one handshake; :func:`connect_ahead` makes that handshake while
the rest of ``shoal run`` starts. ssh itself reads the user's
``~/.ssh/config``: aliases, ``ProxyJump`` and keys work as they do for
``ssh HOST``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from shoal.exceptions import ShoalError
from shoal.spec.inventory import Host

__all__ = [
    "CONNECT_TIMEOUT",
    "REMOTE_ROOT",
    "SshFailed",
    "SshHost",
    "connect_ahead",
    "each_host",
    "ssh_error",
]

REMOTE_ROOT = "$HOME/.shoal"
_T = TypeVar("_T")
_R = TypeVar("_R")
CONNECT_TIMEOUT = 10
# The agents a host has (one name a line): what the first command on a
# host's connection asks, so that the handshake also answers something.
_LIST_AGENTS = f'ls -1 "{REMOTE_ROOT}/agent" 2>/dev/null; exit 0'
# Listings asked ahead (connect_ahead), by control path, until a start takes one;
# and the ssh commands asking them, while they run.
_ahead: dict[Path, tuple[SshHost, Future[subprocess.CompletedProcess[bytes]]]] = {}
_asking: dict[Path, subprocess.Popen[bytes]] = {}
_ahead_lock = threading.Lock()
# How long an exit waits for a listing nobody took before it ends its ssh.
_EXIT_WAIT = 2.0


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


def connect_ahead(hosts: Sequence[Host]) -> None:
    """Open each host's master connection now, in the background, listing its agents.

    ``shoal run --hosts`` calls this as soon as it has read the inventory:
    the handshakes (the slowest part of a host's start) then overlap with
    the boss's start, and :meth:`SshHost.ensure_agent` finds the connection
    open and its answer there (and the agent's zipapp built meanwhile). A
    host asked twice is asked once. What no start took by the time the
    process exits has its master connection closed (its ssh ended if it is
    still connecting), so nothing is left on the hosts.
    """
    if hosts:
        from shoal.launch.zipapp import zipapp_bytes

        # The agent each host's start needs: built meanwhile, once.
        threading.Thread(target=zipapp_bytes, name="agent-zipapp", daemon=True).start()
    for host in hosts:
        ssh = SshHost(host)
        with _ahead_lock:
            if ssh.control in _ahead:
                continue
            if not _ahead:
                atexit.register(_close_unused)
            future: Future[subprocess.CompletedProcess[bytes]] = Future()
            _ahead[ssh.control] = (ssh, future)
        threading.Thread(
            target=_list_agents, args=(ssh, future), name=f"ssh-{host.name}", daemon=True
        ).start()


def _list_agents(ssh: SshHost, future: Future[subprocess.CompletedProcess[bytes]]) -> None:
    argv = [*ssh.argv(), _LIST_AGENTS]
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        with _ahead_lock:
            _asking[ssh.control] = proc
        try:
            out, err = proc.communicate(timeout=CONNECT_TIMEOUT * 3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        finally:
            with _ahead_lock:
                _asking.pop(ssh.control, None)
        future.set_result(subprocess.CompletedProcess(argv, proc.returncode, out, err))
    except BaseException as e:  # handed to whoever takes the answer
        future.set_exception(e)


def _close_unused() -> None:
    """At exit: close the master connections opened ahead that no start used.

    A host still being reached is not waited for long (a mistake in the task
    file exits at once): its ssh is ended.
    """
    with _ahead_lock:
        left = list(_ahead.values())
        _ahead.clear()
    for ssh, future in left:
        with contextlib.suppress(Exception):
            future.result(timeout=_EXIT_WAIT)
        with _ahead_lock:
            asking = _asking.get(ssh.control)
        if asking is not None:
            with contextlib.suppress(OSError):
                asking.terminate()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            ssh.close()


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
        with _ahead_lock:
            ahead = _ahead.pop(self.control, None)
        have = ahead[1].result() if ahead is not None else self.run(_LIST_AGENTS)
        if have.returncode != 0:
            raise SshFailed(self.host.name, ssh_error(have.stderr.decode(errors="replace")))
        if pyz.name.encode() in have.stdout.split():
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

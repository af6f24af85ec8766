"""One worker agent on an ssh host, running as long as its ssh command does.

The agent travels as the zipapp of :mod:`shoal.launch.zipapp`, kept on the
host under ``~/.shoal/agent`` by its hash. It reaches the boss through a
reverse tunnel on the host's connection (``-R``), so the boss may listen on
loopback and hosts behind NAT work; with a direct URL it connects straight.
The token travels on the ssh command's standard input, which then stays open
as the agent's lifeline: when it closes, the agent stops. For a boss that
serves HTTPS, the host is given the CA's certificate and a client
certificate of its own (never the CA's key), 0600 in ``~/.shoal/certs``.
"""

from __future__ import annotations

import contextlib
import io
import random
import shlex
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.launch.contract import BossAccess, label_args
from shoal.launch.lifeline import HeldAgent
from shoal.launch.ssh.client import REMOTE_ROOT, SshFailed, SshHost, ssh_error
from shoal.spec.inventory import Host

__all__ = ["MachineCerts", "SshAgent"]

REMOTE_CERTS = f"{REMOTE_ROOT}/certs"
# The files a host's agent proves itself with: (name on the host, contents).
MachineCerts = Sequence[tuple[str, bytes]]

# Tries at a free port on the host for the reverse tunnel.
TUNNEL_TRIES = 5


class SshAgent(HeldAgent):
    """The ssh command that runs one host's agent, and its log."""

    def __init__(
        self,
        host: Host,
        *,
        log: Path,
        labels: Mapping[str, Any] | None = None,
        log_cap: int | None = None,
        options: Sequence[str] = (),
        certs: MachineCerts = (),
    ) -> None:
        super().__init__(host.name, log)
        self.certs = list(certs)  # ca.crt, NAME.crt, NAME.key: copied before it starts
        self.host = host
        self.options = list(options)  # more agent options ("--alive-file=…")
        self.labels = dict(host.labels if labels is None else labels)
        self.log_cap = log_cap
        self.ssh = SshHost(host)
        self.copied = False
        self.ahead_url: str | None = None  # the boss URL it was started ahead for
        self.ahead_error: SshFailed | None = None  # why its start ahead failed
        self.discarded = False  # its session ended before it was adopted

    def spawn_ahead(self, pyz: Path, url: str) -> None:
        """Start the agent before its boss serves (``shoal run``); it waits for its token.

        Python and the agent load on the host while the boss loads here; the
        agent's first request waits in the boss's listening socket (``url``).
        :meth:`adopt` hands it the token.
        """
        remote, self.copied = self.ssh.ensure_agent(pyz)
        forward, tunnel = self._tunnel(url)
        self.launch([*self.ssh.argv(*forward), self._command(remote, tunnel)], None)
        self.ahead_url = url

    def adopt(self, boss: BossAccess) -> bool:
        """Hand the agent started ahead its token; whether it registered.

        False: it cannot serve this boss (another URL, its tunnel's port was
        taken on the host): it is stopped, and the host is started anew.
        Raises :class:`SshFailed` with the agent's own error line otherwise.
        """
        if self.proc is None or boss.direct_url is not None or boss.url != self.ahead_url:
            self.stop()
            return False
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):  # it ended meanwhile: its log says why
                self.hand_token(boss.token())
            if self.registered(boss):
                return True
        text = self.last_words()
        self.stop()
        if "remote port forwarding failed" in text:
            return False
        raise SshFailed(self.host.name, text)

    def _tunnel(self, url: str) -> tuple[list[str], str]:
        """ssh's options for a reverse tunnel to ``url``, and the URL it gives on the host."""
        # A port on the host's loopback that leads back to the boss.
        parts = urlsplit(url)
        rport = random.randint(20000, 60000)
        target = f"{parts.hostname or '127.0.0.1'}:{parts.port}"
        forward = ["-o", "ExitOnForwardFailure=yes", "-R", f"{rport}:{target}"]
        return forward, f"{parts.scheme}://127.0.0.1:{rport}"

    def failure(self, line: str) -> SshFailed:
        return SshFailed(self.host.name, line)

    def start(self, pyz: Path, boss: BossAccess) -> None:
        """Copy the agent if the host lacks it, start it, and wait until it registers.

        Raises :class:`SshFailed` with ssh's (or the agent's) own error line.
        """
        remote, self.copied = self.ssh.ensure_agent(pyz)
        tls = self._send_certs()
        token = boss.token()
        for _ in range(TUNNEL_TRIES):
            forward: list[str] = []
            url = boss.direct_url
            if url is None:
                forward, url = self._tunnel(boss.url)
            self.launch([*self.ssh.argv(*forward), self._command(remote, url, tls)], token)
            if self.registered(boss):
                return
            text = self.last_words()
            if boss.direct_url is not None or "remote port forwarding failed" not in text:
                raise SshFailed(self.host.name, text)
        raise SshFailed(
            self.host.name, f"no free port for the reverse tunnel after {TUNNEL_TRIES} tries"
        )

    def _send_certs(self) -> list[str]:
        """Copy the host its certificates (0600, in a 0700 folder); the agent's options for them."""
        if not self.certs:
            return []
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for name, data in self.certs:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o600
                tar.addfile(info, io.BytesIO(data))
        sent = self.ssh.run(
            f'umask 077 && mkdir -p "{REMOTE_CERTS}" && chmod 700 "{REMOTE_CERTS}" && '
            f'tar -xf - -C "{REMOTE_CERTS}"',
            stdin=archive.getvalue(),
        )
        if sent.returncode != 0:
            raise SshFailed(self.host.name, ssh_error(sent.stderr.decode(errors="replace")))
        ca, cert, key = (name for name, _ in self.certs)
        return [
            f'--ca="{REMOTE_CERTS}/{ca}"',
            f'--cert="{REMOTE_CERTS}/{cert}"',
            f'--key="{REMOTE_CERTS}/{key}"',
        ]

    def _command(self, remote: str, url: str, tls: Sequence[str] = ()) -> str:
        """The shell command on the host: become the agent, which reads the token on its stdin.

        Never through the environment: the agent's tasks could read what it
        was started with in /proc/PID/environ.
        """
        return " ".join(
            [
                f'mkdir -p "{REMOTE_ROOT}/work" &&',
                "exec",
                shlex.quote(self.host.python),
                f'"{remote}"',
                f"--boss={shlex.quote(url)}",
                # No slots given (0): the agent takes the host's cores.
                *([f"--slots={self.host.slots}"] if self.host.slots > 0 else []),
                f"--name={shlex.quote(self.host.name)}",
                *tls,
                f'--workdir="{REMOTE_ROOT}/work"',
                "--token-file=/dev/stdin",
                "--lifeline",
                *([f"--log-cap={self.log_cap}"] if self.log_cap is not None else []),
                *[shlex.quote(option) for option in self.options],
                *[shlex.quote(label) for label in label_args(self.labels)],
            ]
        )

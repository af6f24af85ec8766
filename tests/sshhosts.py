"""Test hosts with a real sshd each, in network namespaces the test makes.

Each host is a network namespace joined to this one by a veth pair of its
own, with a /30 of 10.232.0.0/16; the route to its address is checked to go
over that veth before any traffic is sent. Inside, ``/usr/sbin/sshd`` runs
with a host key, a config and an authorized key made for the test, and
``SetEnv HOME=…`` gives every host a home folder of its own (they share this
machine's filesystem). Everything is removed at the end, every sshd stopped
by its PID. Needs root, iproute2 and openssh-server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.needs import needs

SSHD = "/usr/sbin/sshd"

needs_ssh_hosts = needs(
    "root, iproute2 (ip netns), openssh-server and the ssh client",
    os.geteuid() == 0
    and shutil.which("ip") is not None
    and Path(SSHD).exists()
    and shutil.which("ssh") is not None,
)
needs_tmux = needs("tmux", shutil.which("tmux") is not None)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class SshHost:
    name: str
    ns: str
    veth: str  # our end of the pair
    peer: str  # the host's end
    local_addr: str  # our end's address
    addr: str  # the host's address, where its sshd listens
    home: Path
    sshd: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    def link(self, up: bool) -> None:
        """Take the host's network link down (or up again)."""
        ip("link", "set", self.veth, "up" if up else "down")


@dataclass
class SshLab:
    root: Path
    key: Path  # the client's private key, authorized on every host that accepts it
    hosts: list[SshHost]

    def inventory(self, only: tuple[str, ...] = (), **per_host: dict[str, object]) -> str:
        """A hosts.yaml for these hosts, or ``only`` those named (extra fields by host name)."""
        lines = ["hosts:"]
        for h in self.hosts:
            if only and h.name not in only:
                continue
            lines.append(f"  - name: {h.name}")
            lines.append(f"    address: {h.addr}")
            lines.append("    user: root")
            lines.append(f"    identity: {self.key}")
            lines.append(
                "    ssh_options: [-o, StrictHostKeyChecking=no, -o, "
                f"UserKnownHostsFile={self.root / 'known_hosts'}]"
            )
            for k, v in per_host.get(h.name, {}).items():
                lines.append(f"    {k}: {v}")
        return "\n".join(lines) + "\n"


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def ssh_lab(root: Path, count: int, refuse: tuple[int, ...] = ()) -> Iterator[SshLab]:
    """``count`` hosts with sshd; those in ``refuse`` do not accept the test's key."""
    root.mkdir(parents=True, exist_ok=True)
    # Debian's sshd wants its privilege separation folder (the service makes it).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    key = root / "id_test"
    _keygen(key)
    other = root / "id_other"
    _keygen(other)
    base = os.getpid() % 50 * 4 + 20
    hosts: list[SshHost] = []
    try:
        for i in range(count):
            tag = f"{os.getpid() % 10000}{i}"
            third = base + i
            h = SshHost(
                name=f"h{i + 1}",
                ns=f"shoal-ssh{tag}",
                veth=f"shs{tag}a",
                peer=f"shs{tag}b",
                local_addr=f"10.232.{third}.1",
                addr=f"10.232.{third}.2",
                home=root / f"home{i + 1}",
            )
            hosts.append(h)
            ip("netns", "add", h.ns)
            ip("link", "add", h.veth, "type", "veth", "peer", "name", h.peer)
            ip("link", "set", h.peer, "netns", h.ns)
            ip("addr", "add", f"{h.local_addr}/30", "dev", h.veth)
            ip("link", "set", h.veth, "up")
            ip("netns", "exec", h.ns, "ip", "addr", "add", f"{h.addr}/30", "dev", h.peer)
            ip("netns", "exec", h.ns, "ip", "link", "set", h.peer, "up")
            ip("netns", "exec", h.ns, "ip", "link", "set", "lo", "up")
            # Before any traffic: both directions go over the veth we made.
            assert f"dev {h.veth}" in ip("route", "get", h.addr)
            assert f"dev {h.peer}" in ip("netns", "exec", h.ns, "ip", "route", "get", h.local_addr)

            h.home.mkdir()
            etc = root / f"sshd{i + 1}"
            etc.mkdir()
            _keygen(etc / "host_key")
            authorized = etc / "authorized_keys"
            accepted = other if i in refuse else key
            authorized.write_text(Path(str(accepted) + ".pub").read_text())
            config = etc / "sshd_config"
            config.write_text(
                f"ListenAddress {h.addr}\n"
                "Port 22\n"
                f"HostKey {etc / 'host_key'}\n"
                f"PidFile {etc / 'sshd.pid'}\n"
                f"AuthorizedKeysFile {authorized}\n"
                "PermitRootLogin prohibit-password\n"
                "PasswordAuthentication no\n"
                "KbdInteractiveAuthentication no\n"
                "UsePAM no\n"
                "StrictModes no\n"
                "AllowTcpForwarding yes\n"
                "MaxSessions 50\n"
                "MaxStartups 50\n"
                # A tmux server of its own too (its socket would be in the shared /tmp).
                f"SetEnv HOME={h.home} TMUX_TMPDIR={h.home}\n"
                "Subsystem sftp internal-sftp\n"
            )
            h.log = etc / "sshd.log"
            h.sshd = subprocess.Popen(
                ["ip", "netns", "exec", h.ns, SSHD, "-D", "-f", str(config), "-E", str(h.log)]
            )
        for h in hosts:
            _wait_listening(h)
        yield SshLab(root=root, key=key, hosts=hosts)
    finally:
        for h in hosts:
            _stop_what_runs_there(h)
            if h.sshd is not None and h.sshd.poll() is None:
                h.sshd.send_signal(signal.SIGTERM)
                try:
                    h.sshd.wait(10)
                except subprocess.TimeoutExpired:
                    h.sshd.kill()
                    h.sshd.wait()
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", h.veth)
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", h.ns)


def _stop_what_runs_there(h: SshHost) -> None:
    """Stop, by PID, what the test started on the host: ssh sessions, agents, tmux.

    A session whose link went down stays open on the host (its sshd never
    hears the client leave), and the listener's SIGTERM does not end it.
    """
    try:
        pids = [int(p) for p in ip("netns", "pids", h.ns).split()]
    except subprocess.CalledProcessError:
        return
    pids = [p for p in pids if h.sshd is None or p != h.sshd.pid]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(_exists(p) for p in pids):
            time.sleep(0.05)


def _exists(pid: int) -> bool:
    """Alive and not a zombie (whoever reaps it, it runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_listening(h: SshHost) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "netns", "exec", h.ns, "ss", "-ltn"], capture_output=True, text=True
        ).stdout
        if f"{h.addr}:22" in out:
            return
        if h.sshd is not None and h.sshd.poll() is not None:
            raise AssertionError(f"sshd on {h.name} exited: {h.log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"sshd on {h.name} did not start listening")

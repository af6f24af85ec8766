"""Test hosts with a real sshd each, in network namespaces the test makes.

Each host is a network namespace joined to this one by a veth pair of its
own, a point-to-point link to its address (``ssh_lab``'s from a /30 of
10.232.0.0/16; ``make_host`` makes one at any address, as the cloud lab does
at its VMs' addresses); the route to its address is checked to go over that
veth before any traffic is sent. Inside, ``/usr/sbin/sshd`` runs
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


def keygen(path: Path) -> None:
    """An ed25519 key pair without a passphrase: ``path`` and ``path.pub``."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def ssh_lab(root: Path, count: int, refuse: tuple[int, ...] = ()) -> Iterator[SshLab]:
    """``count`` hosts with sshd; those in ``refuse`` do not accept the test's key."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / "id_test"
    keygen(key)
    other = root / "id_other"
    keygen(other)
    base = os.getpid() % 50 * 4 + 20
    hosts: list[SshHost] = []
    try:
        for i in range(count):
            tag = f"{os.getpid() % 10000}{i}"
            third = base + i
            hosts.append(
                make_host(
                    root,
                    f"h{i + 1}",
                    f"10.232.{third}.2",
                    other if i in refuse else key,
                    local_addr=f"10.232.{third}.1",
                    ns=f"shoal-ssh{tag}",
                    veth=f"shs{tag}a",
                    peer=f"shs{tag}b",
                    wait=False,
                )
            )
        for h in hosts:
            _wait_listening(h)
        yield SshLab(root=root, key=key, hosts=hosts)
    finally:
        for h in hosts:
            stop_host(h)


def make_host(
    root: Path,
    name: str,
    addr: str,
    key: Path,
    *,
    more_keys: tuple[str, ...] = (),
    local_addr: str,
    ns: str,
    veth: str,
    peer: str,
    wait: bool = True,
) -> SshHost:
    """A host ``name`` at ``addr`` whose sshd accepts ``key`` (its ``.pub`` beside it) for root.

    ``more_keys`` are public keys (``authorized_keys`` lines) it accepts too.

    Its namespace ``ns`` is joined to this one by the veth pair ``veth`` (our
    end, with ``local_addr``) and ``peer``, as a point-to-point link: the /32
    route to ``addr`` goes over ``veth`` and wins over any wider route (the
    cloud lab's blackhole). Both directions are checked before sshd starts.
    Its files (home, sshd's config, keys and log) are under ``root``; made
    again under the same name, it finds its home and host key as it left them
    (a VM stopped and started keeps its disk). With ``wait``, returns once
    sshd listens. Half made, it is taken down again.
    """
    # Debian's sshd wants its privilege separation folder (the service makes it).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    h = SshHost(
        name=name,
        ns=ns,
        veth=veth,
        peer=peer,
        local_addr=local_addr,
        addr=addr,
        home=root / f"{name}-home",
    )
    # A name already taken fails here, before anything is ours to undo.
    ip("netns", "add", h.ns)
    try:
        ip("link", "add", h.veth, "type", "veth", "peer", "name", h.peer)
    except BaseException:
        ip("netns", "del", h.ns)
        raise
    try:
        ip("link", "set", h.peer, "netns", h.ns)
        ip("addr", "add", h.local_addr, "peer", f"{h.addr}/32", "dev", h.veth)
        ip("link", "set", h.veth, "up")
        inside = ("netns", "exec", h.ns, "ip")
        ip(*inside, "addr", "add", h.addr, "peer", f"{h.local_addr}/32", "dev", h.peer)
        ip(*inside, "link", "set", h.peer, "up")
        ip(*inside, "link", "set", "lo", "up")
        # Before any traffic: both directions go over the veth we made.
        there = ip("route", "get", h.addr)
        assert f"dev {h.veth} " in there, f"the route to {h.addr} is not over {h.veth}: {there}"
        back = ip(*inside, "route", "get", h.local_addr)
        assert f"dev {h.peer} " in back, f"{h.ns}'s route back is not over {h.peer}: {back}"

        h.home.mkdir(exist_ok=True)
        etc = root / f"{name}-sshd"
        etc.mkdir(exist_ok=True)
        if not (etc / "host_key").exists():
            keygen(etc / "host_key")
        authorized = etc / "authorized_keys"
        lines = [Path(str(key) + ".pub").read_text().strip(), *(k.strip() for k in more_keys)]
        authorized.write_text("".join(line + "\n" for line in lines))
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
        if wait:
            _wait_listening(h)
    except BaseException:
        stop_host(h)
        raise
    return h


def stop_host(h: SshHost) -> None:
    """Take the host down: what runs there and its sshd stopped by PID, its veth and namespace gone.

    Safe on a host half made or already stopped.
    """
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

"""Across networks: a boss under mutual TLS on an address other machines reach.

The other machines are network namespaces joined to this one by a veth pair
each (as :mod:`tests.sshhosts` makes them, with names of this file's own);
the boss listens on the first pair's address on this side, and each route
to it is checked to go over that host's own veth before any traffic is sent.
The ssh path (``shoal up``) gets a host of :mod:`tests.sshhosts` with an
sshd, at addresses and names of this file's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    SRC,
    Procs,
    boss_info,
    shoal,
    shoal_json,
    start_boss,
    wait_for,
    write,
)
from tests.needs import needs
from tests.sshhosts import SshLab, keygen, make_host, needs_ssh_hosts, stop_host

needs_netns = needs(
    "root and iproute2 (ip netns)", os.geteuid() == 0 and shutil.which("ip") is not None
)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class LabHost:
    ns: str
    veth: str  # our end
    peer: str  # the host's end
    local_addr: str  # our end's address
    addr: str  # the host's address


@dataclass
class Lab:
    hosts: list[LabHost]
    boss_addr: str  # the address the boss listens on: the first veth's, on our side


@contextlib.contextmanager
def tls_lab(count: int) -> Iterator[Lab]:
    """``count`` hosts that all reach this side's address of the first host's veth."""
    base = os.getpid() % 50 * 4 + 20
    hosts: list[LabHost] = []
    try:
        for i in range(count):
            tag = f"{os.getpid() % 10000}{i}"
            h = LabHost(
                ns=f"shoal-tls{tag}",
                veth=f"sht{tag}a",
                peer=f"sht{tag}b",
                local_addr=f"10.236.{base + i}.1",
                addr=f"10.236.{base + i}.2",
            )
            ip("netns", "add", h.ns)
            hosts.append(h)
            ip("link", "add", h.veth, "type", "veth", "peer", "name", h.peer)
            ip("link", "set", h.peer, "netns", h.ns)
            ip("addr", "add", h.local_addr, "peer", f"{h.addr}/32", "dev", h.veth)
            ip("link", "set", h.veth, "up")
            inside = ("netns", "exec", h.ns, "ip")
            ip(*inside, "addr", "add", h.addr, "peer", f"{h.local_addr}/32", "dev", h.peer)
            ip(*inside, "link", "set", h.peer, "up")
            ip(*inside, "link", "set", "lo", "up")
        boss_addr = hosts[0].local_addr
        for h in hosts:
            if boss_addr != h.local_addr:
                ip("netns", "exec", h.ns, "ip", "route", "add", f"{boss_addr}/32", "dev", h.peer)
            # Before any traffic: each host reaches the boss over its own veth, and back.
            there = ip("netns", "exec", h.ns, "ip", "route", "get", boss_addr)
            assert f"dev {h.peer} " in there, (
                f"{h.ns} reaches {boss_addr} not over {h.peer}: {there}"
            )
            back = ip("route", "get", h.addr)
            assert f"dev {h.veth} " in back, f"the route to {h.addr} is not over {h.veth}: {back}"
        yield Lab(hosts, boss_addr)
    finally:
        for h in hosts:
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("link", "del", h.veth)
            with contextlib.suppress(subprocess.CalledProcessError):
                ip("netns", "del", h.ns)


@pytest.fixture
def lab() -> Iterator[Lab]:
    with tls_lab(2) as made:
        yield made


class Started:
    """Processes of a test (some inside a namespace), each stopped by its PID."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{len(self.procs)}.log").open("wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=dict(os.environ, PYTHONPATH=SRC, **(env or {})),
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.logs / f"{self.procs.index(proc)}.log").read_text()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    s = Started(tmp_path / "logs")
    yield s
    s.stop()


@needs_netns
def test_plain_http_on_the_test_hosts_address_is_refused_in_one_line(
    lab: Lab, tmp_path: Path
) -> None:
    proc = shoal("boss", "--listen", f"{lab.boss_addr}:0", cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "--tls or --mtls" in proc.stderr and "--insecure" in proc.stderr
    assert boss_info(tmp_path / ".shoal") is None  # it never served


@needs_netns
def test_a_run_over_mtls_with_two_workers_on_test_hosts(
    lab: Lab, tmp_path: Path, started: Started
) -> None:
    boss_dir = tmp_path / "boss"
    boss_dir.mkdir()
    assert shoal("certs", "init", cwd=boss_dir).returncode == 0
    certs = boss_dir / ".shoal" / "certs"
    for name in ("w1", "w2"):
        assert shoal("certs", "add", name, "--client", cwd=boss_dir).returncode == 0
    boss = started.start(
        [sys.executable, "-m", "shoal", "boss", "--mtls", "--listen", f"{lab.boss_addr}:0"],
        cwd=boss_dir,
    )
    info = wait_for(lambda: boss_info(boss_dir / ".shoal"), what="the boss to serve")
    url = info["url"]
    assert url.startswith(f"https://{lab.boss_addr}:"), url

    workers = []
    for name, host in zip(("w1", "w2"), lab.hosts, strict=True):
        # Each worker holds its own files, as a machine of its own would.
        mine = tmp_path / name
        mine.mkdir()
        for f in ("ca.crt", f"{name}.crt", f"{name}.key"):
            shutil.copy2(certs / f, mine / f)
        argv = ["ip", "netns", "exec", host.ns, sys.executable, "-m", "shoal", "worker"]
        argv += ["--boss", url, "--name", name, "--slots", "1", "--ca", str(mine / "ca.crt")]
        argv += ["--cert", str(mine / f"{name}.crt"), "--key", str(mine / f"{name}.key")]
        workers.append(started.start(argv, cwd=mine, env={"SHOAL_TOKEN": info["token"]}))

    tasks = [
        {"name": f"on-{w}-{i}", "host": w, "run": "echo $SHOAL_WORKER"}
        for w in ("w1", "w2")
        for i in range(2)
    ]
    write(boss_dir / "run.json", json.dumps(tasks))
    submitted = shoal("submit", "run.json", cwd=boss_dir)
    assert submitted.returncode == 0, submitted.stderr

    def finished() -> bool:
        for p in (boss, *workers):
            assert p.poll() is None, started.log(p)
        proc = shoal("status", "--json", cwd=boss_dir)
        return proc.returncode == 0 and json.loads(proc.stdout)["state"] == "succeeded"

    wait_for(finished, timeout=120, what="the run over mTLS to finish")
    listed = json.loads(shoal("workers", "--json", cwd=boss_dir).stdout)
    assert sorted((w["name"], w["done"]) for w in listed) == [("w1", 2), ("w2", 2)]


@needs_ssh_hosts
def test_shoal_up_gives_each_ssh_host_its_own_certificate_and_never_the_cas_key(
    tmp_path: Path, procs: Procs
) -> None:
    root = tmp_path / "lab"
    root.mkdir()
    key = root / "id_test"
    keygen(key)
    tag = f"{os.getpid() % 10000}"
    third = os.getpid() % 50 * 4 + 20
    host = make_host(
        root,
        "tls1",
        f"10.237.{third}.2",
        key,
        local_addr=f"10.237.{third}.1",
        ns=f"shoal-tlsh{tag}",
        veth=f"sth{tag}a",
        peer=f"sth{tag}b",
    )
    try:
        write(tmp_path / "hosts.yaml", SshLab(root, key, [host]).inventory())
        info = start_boss(procs, tmp_path, "--mtls")
        assert info["url"].startswith("https://127.0.0.1:")
        up = shoal("up", "--hosts", "hosts.yaml", cwd=tmp_path, timeout=120)
        kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
        procs.extra.append(kept["pid"])
        try:
            assert up.returncode == 0, up.stderr
            assert "tls1: worker started" in up.stdout, up.stdout
            there = host.home / ".shoal" / "certs"
            assert sorted(p.name for p in there.iterdir()) == ["ca.crt", "tls1.crt", "tls1.key"]
            assert (there / "tls1.key").stat().st_mode & 0o777 == 0o600
            assert (there / "ca.crt").read_bytes() == (
                tmp_path / ".shoal/certs/ca.crt"
            ).read_bytes()
            listed = shoal("certs", "ls", cwd=tmp_path).stdout
            assert any(line.split()[:2] == ["tls1", "client"] for line in listed.splitlines())

            write(tmp_path / "t.yaml", "name: far\ntasks:\n  - name: a\n    run: echo $HOME\n")
            assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
            wait_for(
                lambda: shoal_json("status", "far", cwd=tmp_path)["state"] == "succeeded",
                timeout=60,
                what="the run on the ssh host, over mTLS through the tunnel",
            )
        finally:
            down = shoal("down", cwd=tmp_path)
        assert down.returncode == 0, down.stderr
    finally:
        stop_host(host)

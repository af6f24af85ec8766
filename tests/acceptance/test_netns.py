"""A worker cut off from the network for longer than its lease.

The test makes its own host: a network namespace joined to this one by a veth
pair it creates, with addresses of its own. It checks that the route to each
address goes over that veth before any traffic is sent, and removes it all at
the end. Needs root and iproute2 (see tests/needs.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SRC, Procs, boss_info, free_port, shoal, shoal_json, wait_for, write
from tests.needs import needs

pytestmark = needs(
    "root and iproute2 (ip netns)", os.geteuid() == 0 and shutil.which("ip") is not None
)


def ip(*args: str) -> str:
    return subprocess.run(["ip", *args], check=True, capture_output=True, text=True).stdout


@dataclass
class NetnsHost:
    ns: str
    veth: str  # our end
    host_addr: str  # our end's address: the boss listens here
    ns_addr: str  # the test host's address


@pytest.fixture
def test_host() -> Iterator[NetnsHost]:
    n = os.getpid() % 200 + 20
    host = NetnsHost(
        ns=f"shoal-t{os.getpid()}",
        veth=f"shl{os.getpid() % 100000}h",
        host_addr=f"10.231.{n}.1",
        ns_addr=f"10.231.{n}.2",
    )
    peer = host.veth[:-1] + "w"
    ip("netns", "add", host.ns)
    try:
        ip("link", "add", host.veth, "type", "veth", "peer", "name", peer)
        ip("link", "set", peer, "netns", host.ns)
        ip("addr", "add", f"{host.host_addr}/30", "dev", host.veth)
        ip("link", "set", host.veth, "up")
        ip("netns", "exec", host.ns, "ip", "addr", "add", f"{host.ns_addr}/30", "dev", peer)
        ip("netns", "exec", host.ns, "ip", "link", "set", peer, "up")
        ip("netns", "exec", host.ns, "ip", "link", "set", "lo", "up")
        # Before any traffic: both directions go over the veth we made.
        assert f"dev {host.veth}" in ip("route", "get", host.ns_addr)
        assert f"dev {peer}" in ip("netns", "exec", host.ns, "ip", "route", "get", host.host_addr)
        yield host
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            ip("link", "del", host.veth)
        ip("netns", "del", host.ns)


def test_cut_off_worker_loses_its_task_and_its_late_report_is_dropped(
    tmp_path: Path, procs: Procs, test_host: NetnsHost
) -> None:
    port = free_port()
    # Plain HTTP off loopback must be asked for (--insecure); TLS is test_tls.py's.
    procs.start(
        "boss",
        "--listen",
        f"{test_host.host_addr}:{port}",
        "--insecure",
        "--lease",
        "2",
        cwd=tmp_path,
    )
    info = wait_for(lambda: boss_info(tmp_path / ".shoal"), what="the boss")
    url = f"http://{test_host.host_addr}:{port}"
    env = dict(os.environ, PYTHONPATH=SRC, SHOAL_TOKEN=info["token"])
    with (tmp_path / "remote.log").open("w") as log:
        remote = subprocess.Popen(
            ["ip", "netns", "exec", test_host.ns, sys.executable, "-m", "shoal", "worker",
             "--boss", url, "--slots", "1", "--name", "remote"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    procs.extra.append(remote.pid)
    try:
        wait_for(
            lambda: [w["name"] for w in shoal_json("workers", cwd=tmp_path)] == ["remote"],
            what="remote",
        )
        write(
            tmp_path / "t.yaml",
            "name: cut\ntasks:\n  - {name: job, run: 'sleep 4; echo finished'}\n",
        )
        shoal("submit", "t.yaml", cwd=tmp_path)
        wait_for(
            lambda: shoal_json("tasks", "cut", cwd=tmp_path)[0]["worker"] == "remote",
            what="the remote to take it",
        )
        procs.start(
            "worker",
            "--boss",
            url,
            "--slots",
            "1",
            "--name",
            "local",
            cwd=tmp_path,
            env={"SHOAL_TOKEN": info["token"]},
        )
        ip("link", "set", test_host.veth, "down")
        cut_at = time.monotonic()
        try:
            wait_for(
                lambda: shoal_json("status", "cut", cwd=tmp_path)["state"] != "running",
                timeout=30,
                what="the task to run elsewhere",
            )
        finally:
            ip("link", "set", test_host.veth, "up")
        assert time.monotonic() - cut_at < 20
        task = shoal_json("tasks", "cut", cwd=tmp_path)[0]
        assert (
            task["state"] == "succeeded"
            and task["worker"] == "local"
            and task["result"] == "finished"
        )
        # The remote's own attempt ends meanwhile; once its link is back it reports, and is not heard.
        wait_for(
            lambda: any(
                e["kind"] == "report_dropped" for e in shoal_json("events", "cut", cwd=tmp_path)
            ),
            timeout=60,
            what="the late report to arrive and be dropped",
        )
        events = shoal_json("events", "cut", cwd=tmp_path)
        assert [e["kind"] for e in events].count("task_succeeded") == 1
        assert any(e["kind"] == "attempt_lost" for e in events)
    finally:
        remote.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            remote.wait(15)

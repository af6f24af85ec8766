"""Ssh hosts for the benches, named so that they never meet the tests' own.

The same hosts as ``tests.sshhosts.ssh_lab`` (a network namespace with a real
sshd each, on a veth pair of its own, the route to it checked to go over
that veth before any traffic), but their namespaces are called
``s18b…``, their links ``s18…`` and their addresses are taken from
10.218.0.0/16, which no test uses: a bench may run while the acceptance tests
(whose names and addresses are fixed, or follow their PID) run too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from tests.sshhosts import SshHost, SshLab, _wait_listening, ip, keygen, make_host, stop_host


def _free_base(first: int, count: int) -> int:
    """The first of ``count`` free /24s of 10.218.0.0/16 from ``first`` on.

    Another bench's lab may be up: its addresses are on this machine's links.
    """
    taken = ip("-o", "addr", "show")
    for k in range(60):
        base = (first + 4 * k) % 240
        if all(f"inet 10.218.{base + i}.1 " not in taken for i in range(count)):
            return base
    raise RuntimeError("no free addresses in 10.218.0.0/16 for the bench's hosts")


@contextlib.contextmanager
def bench_lab(root: Path, count: int) -> Iterator[SshLab]:
    """``count`` hosts with sshd, all accepting the lab's key; removed at the end."""
    root.mkdir(parents=True, exist_ok=True)
    key = root / "id_bench"
    keygen(key)
    pid = os.getpid()
    base = _free_base(pid % 60 * 4, count)
    hosts: list[SshHost] = []
    try:
        for i in range(count):
            tag = f"{pid % 10000}{i}"
            hosts.append(
                make_host(
                    root,
                    f"h{i + 1}",
                    f"10.218.{base + i}.2",
                    key,
                    local_addr=f"10.218.{base + i}.1",
                    ns=f"s18b{pid}-{i}",
                    veth=f"s18{tag}a",
                    peer=f"s18{tag}b",
                    wait=False,
                )
            )
        for h in hosts:
            _wait_listening(h)
        yield SshLab(root=root, key=key, hosts=hosts)
    finally:
        for h in hosts:
            stop_host(h)

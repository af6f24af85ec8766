#!/usr/bin/env python3
"""VMs from a cloud on the EC2 emulator: time to bring them up, and to leave none running.

The cloud is the tests' (``tests/cloudlab.py``): moto's EC2 in server mode on a
loopback port, its subnet blackholed here, and for each instance moto starts
a real test host (a network namespace with its own ``sshd``) made at its
private address; terminating the instance stops the host. Made by this
script and removed at its end (needs root, iproute2, openssh-server, and
moto[server] and boto3 from the test extra). The "boot" of a VM is the lab
making its host (a few tenths of a second, one host at a time), so the
figures measure shoal's own waits, not a real cloud's.

In one invocation, with N VMs (``--vms``, default 3), each round:

* bring-up: ``shoal up --pool`` (``count: N``) next to a running ``shoal
  boss``, until all N workers have registered (their ``registered`` time in
  the boss's database); and, as the baseline, ``shoal up --hosts`` on an
  inventory of N hosts of the same lab that already run (instances started
  straight in moto, their hosts listening): the ssh path alone, so the ratio
  is what the cloud API and the wait for boot add;
* a run: ``shoal run tasks.yaml --pool`` with ``count: N`` and 3N short
  tasks: its whole wall time, and the time from the last task's end (the
  latest ``ended`` of its attempts) to every instance ``terminated`` in moto
  (polled every 0.05 s from here; also from the moment the command exited,
  negative when it terminated them before returning);
* autoscaling: a ``min: 0, max: N, idle_stop: 5s`` pool under ``shoal up``,
  then a burst of 4N tasks through ``shoal submit``: the time from the submit
  to the first and to the N-th worker registered, and from the run's last
  task's end to every instance terminated (about ``idle_stop`` plus the
  keeper's look at the queue, every 2 s).

    sudo python bench/clouds.py [--vms 3] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from driver import POLL, Driver, row, say, wait_registered

SLOTS = 2
IDLE_STOP = 5
WIDTH = 44  # of a figure's name in the table


class Bench(Driver):
    """One cloud lab, and the shoal commands this bench runs against it."""

    def __init__(self, lab: Any, work: Path, vms: int) -> None:
        super().__init__(work, lab.env())
        self.lab = lab
        self.vms = vms

    def pool_file(self, path: Path, **size: object) -> None:
        lab = self.lab
        lines = [
            "pools:",
            "  - name: vm",
            "    provider: aws",
            *[f"    {k}: {v}" for k, v in size.items()],
            f"    slots: {SLOTS}",
            f"    endpoint: {lab.endpoint}",
            f"    region: {lab.region}",
            f"    image: {lab.image}",
            f"    size: {lab.size}",
            f"    subnet: {lab.subnet}",
            "    address: private",
            "    user: root",
            f"    key: {lab.key}",
        ]
        path.write_text("\n".join(lines) + "\n")

    def live(self) -> list[str]:
        alive = ("pending", "running", "stopping", "stopped", "shutting-down")
        return [i["InstanceId"] for i in self.lab.instances(alive)]

    def settle(self) -> None:
        """Wait until no instance runs and no host is left (the end of a round)."""
        deadline = time.monotonic() + 60
        while self.live():
            if time.monotonic() > deadline:
                sys.exit(f"instances still running after 60 s: {self.live()}")
            time.sleep(0.1)
        self.lab.wait_hosts(0, timeout=60)


def last_end(cwd: Path) -> float:
    """The latest end of an attempt in ``cwd``'s state folder (epoch seconds)."""
    db = cwd / ".shoal" / "shoal.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
        (ended,) = con.execute("SELECT max(ended) FROM attempts").fetchone()
    return float(ended)


class Watch:
    """Polls moto every 0.05 s on a thread: when every instance started since it began ended."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.before = {i["InstanceId"] for i in lab.instances()}
        self.seen: list[tuple[float, dict[str, str]]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="watch", daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.stopping.is_set():
            states = {
                i["InstanceId"]: i["State"]["Name"]
                for i in self.lab.instances()
                if i["InstanceId"] not in self.before
            }
            self.seen.append((time.time(), states))
            self.stopping.wait(POLL)

    def all_terminated(self, n: int, timeout: float = 120) -> float:
        """The first time all ``n`` instances (or more) were seen terminated; waits for it."""
        deadline = time.monotonic() + timeout
        while not self._ended(self.seen[-1][1] if self.seen else {}, n):
            if time.monotonic() > deadline:
                self.stopping.set()
                sys.exit(f"instances not all terminated after {timeout} s: {self.seen[-1][1]}")
            time.sleep(POLL)
        self.stopping.set()
        self.thread.join(10)
        # Terminated is final: the first look that saw every one of them so.
        ids = set(self.seen[-1][1])
        return min(
            at
            for at, states in self.seen
            if ids <= set(states) and all(states[i] == "terminated" for i in ids)
        )

    @staticmethod
    def _ended(states: dict[str, str], n: int) -> bool:
        return len(states) >= n and all(s == "terminated" for s in states.values())


def bring_up(bench: Bench) -> tuple[float, float, float]:
    """Seconds from ``shoal up`` to N workers registered: from a cloud pool, and on ssh hosts
    that already run; and the lab's emulated boot of those hosts (moto's answer to their
    listening sshd)."""
    n, lab = bench.vms, bench.lab
    cwd = bench.folder("up")
    bench.pool_file(cwd / "pools.yaml", count=n)
    with bench.boss(cwd):
        start = time.time()
        bench.shoal("up", "--pool", "pools.yaml", cwd=cwd)
        cloud = wait_registered(cwd, n)[-1] - start
        bench.shoal("down", cwd=cwd)
        bench.settle()

        # The baseline: N hosts of the same lab that already run, through ssh alone.
        booting = time.monotonic()
        made = lab.ec2.run_instances(
            ImageId=lab.image, InstanceType=lab.size, MinCount=n, MaxCount=n, SubnetId=lab.subnet
        )
        hosts = lab.wait_hosts(n, timeout=120)
        boot = time.monotonic() - booting
        lines = ["hosts:"]
        for i, h in enumerate(hosts.values()):
            lines += [
                f"  - name: h{i + 1}",
                f"    address: {h.addr}",
                "    user: root",
                f"    identity: {lab.key}",
                f"    slots: {SLOTS}",
                f"    ssh_options: [-o, StrictHostKeyChecking=no, "
                f"-o, UserKnownHostsFile={lab.known_hosts}]",
            ]
        (cwd / "hosts.yaml").write_text("\n".join(lines) + "\n")
        names = {f"h{i + 1}" for i in range(n)}
        start = time.time()
        bench.shoal("up", "--hosts", "hosts.yaml", cwd=cwd)
        ssh = wait_registered(cwd, n, names)[-1] - start
        bench.shoal("down", cwd=cwd)
        lab.ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in made["Instances"]])
        bench.settle()
    return cloud, ssh, boot


def run_on_vms(bench: Bench) -> tuple[float, float, float]:
    """``shoal run --pool`` on N VMs: its wall time, and the seconds from the last task's end
    and from the command's exit to every instance terminated."""
    n = bench.vms
    cwd = bench.folder("run")
    bench.pool_file(cwd / "pools.yaml", count=n)
    tasks = [{"name": f"t{i}", "run": "sleep 0.5"} for i in range(3 * n)]
    (cwd / "tasks.json").write_text(json.dumps(tasks))
    watch = Watch(bench.lab)
    start = time.time()
    bench.shoal("run", "tasks.json", "--pool", "pools.yaml", "-q", cwd=cwd)
    exited = time.time()
    terminated = watch.all_terminated(n)
    bench.settle()
    return exited - start, terminated - last_end(cwd), terminated - exited


def autoscale(bench: Bench) -> tuple[float, float, float]:
    """A ``min: 0, max: N`` pool under a burst: seconds from ``shoal submit`` to the first and
    the N-th worker registered, and from the last task's end to every instance terminated."""
    n = bench.vms
    cwd = bench.folder("scale")
    bench.pool_file(cwd / "pools.yaml", min=0, max=n, idle_stop=f"{IDLE_STOP}s")
    tasks = [{"name": f"t{i}", "run": "sleep 1"} for i in range(4 * n)]
    (cwd / "tasks.json").write_text(json.dumps(tasks))
    with bench.boss(cwd):
        bench.shoal("up", "--pool", "pools.yaml", cwd=cwd)
        watch = Watch(bench.lab)
        start = time.time()
        bench.shoal("submit", "tasks.json", cwd=cwd)
        joined = wait_registered(cwd, n)
        deadline = time.monotonic() + 300
        while json.loads(bench.shoal("status", "--json", cwd=cwd).stdout)["state"] != "succeeded":
            if time.monotonic() > deadline:
                sys.exit("the burst did not succeed within 300 s")
            time.sleep(0.2)
        terminated = watch.all_terminated(n)
        ended = last_end(cwd)
        bench.shoal("down", cwd=cwd)
    bench.settle()
    return joined[0] - start, joined[n - 1] - start, terminated - ended


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vms", type=int, default=3, help="VMs in each pool (default 3)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of each; the median is shown (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/clouds.py makes network namespaces: run it as root")
    if args.vms < 1 or args.repeat < 1:
        sys.exit("--vms and --repeat take a number of 1 or more")
    try:
        from tests.cloudlab import cloud_lab
    except ImportError as e:
        sys.exit(f"the cloud lab needs moto[server] and boto3 (pip install -e '.[test]'): {e}")

    figures: dict[str, list[float]] = {
        k: []
        for k in (
            "up_cloud",
            "up_ssh",
            "lab_boot",
            "run_wall",
            "run_end_to_terminated",
            "run_exit_to_terminated",
            "scale_first",
            "scale_all",
            "scale_end_to_terminated",
        )
    }
    work = Path(tempfile.mkdtemp(prefix="shoal-bench-clouds-"))
    try:
        with cloud_lab(work / "lab") as lab:
            bench = Bench(lab, work, args.vms)
            for i in range(args.repeat):
                say(f"round {i + 1} of {args.repeat}: shoal up --pool, then --hosts")
                for k, v in zip(("up_cloud", "up_ssh", "lab_boot"), bring_up(bench), strict=True):
                    figures[k].append(v)
                say(f"round {i + 1} of {args.repeat}: shoal run --pool")
                keys = ("run_wall", "run_end_to_terminated", "run_exit_to_terminated")
                for k, v in zip(keys, run_on_vms(bench), strict=True):
                    figures[k].append(v)
                say(f"round {i + 1} of {args.repeat}: min 0, max {args.vms}, a burst")
                keys = ("scale_first", "scale_all", "scale_end_to_terminated")
                for k, v in zip(keys, autoscale(bench), strict=True):
                    figures[k].append(v)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n, f = args.vms, figures
    print(
        f"{n} VMs on moto's EC2 (each a network namespace with sshd on this machine, "
        f"{os.cpu_count()} cores); median ({args.repeat} rounds)"
    )
    print(f"bring-up: shoal up until {n} workers registered")
    print(row("shoal up --pool (count)", f["up_cloud"], WIDTH))
    print(row("shoal up --hosts, the same hosts running", f["up_ssh"], WIDTH))
    ratio = statistics.median(f["up_cloud"]) / statistics.median(f["up_ssh"])
    print(f"  cloud / ssh: {ratio:.2f}x")
    print(row("(the lab's boot: run_instances to N sshd)", f["lab_boot"], WIDTH))
    print(f"shoal run --pool, count {n}, {3 * n} tasks of 0.5 s")
    print(row("wall time", f["run_wall"], WIDTH))
    print(row("last task's end -> all terminated", f["run_end_to_terminated"], WIDTH))
    print(row("shoal run's exit -> all terminated", f["run_exit_to_terminated"], WIDTH))
    print(f"min 0, max {n}, idle_stop {IDLE_STOP}s under shoal up, {4 * n} tasks of 1 s submitted")
    print(row("submit -> first worker registered", f["scale_first"], WIDTH))
    print(row(f"submit -> worker {n} registered", f["scale_all"], WIDTH))
    print(row("last task's end -> all terminated", f["scale_end_to_terminated"], WIDTH))
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

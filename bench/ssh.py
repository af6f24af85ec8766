#!/usr/bin/env python3
"""Workers on three ssh hosts: bring-up time, and throughput against GNU parallel.

The hosts are the tests' (``tests/sshhosts.py``): three network namespaces,
each on a veth pair of its own with a real ``sshd``, made by this script and
removed at its end (needs root, iproute2 and openssh-server). They share this
machine's cores, so the figures measure shoal's overhead, not more cores.

In one invocation:

* bring-up: ``shoal up`` next to a running ``shoal boss``, until all three
  workers have registered; *cold* on hosts that have never seen shoal (the
  agent is copied, connections are new), *warm* after ``shoal down`` (the
  agent is kept by its hash; connections are new again);
* throughput: N no-op tasks through ``shoal run --hosts`` (2 slots a host,
  bring-up included) and through GNU ``parallel --sshloginfile`` with 2 jobs
  a host on the same hosts, with ``-M`` (its ControlMaster option, one
  connection per host) and without it (one ssh connection per task, so
  slow that it gets at most 200 of the tasks; its rate is still a rate).

    sudo python bench/ssh.py [--tasks 600] [--repeat 3]

At 1,000 tasks and more, GNU parallel 20221122's ``-M`` breaks down on this
machine ("Cannot append to buffer file", then a new connection for every
task, about 15 tasks/s), so the default stays below that.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.sshlab import bench_lab  # noqa: E402
from tests.sshhosts import SshLab  # noqa: E402

HOSTS = 3
SLOTS = 2


def say(text: str) -> None:
    sys.stderr.write(f"… {text}\n")
    sys.stderr.flush()


def shoal(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if check and proc.returncode != 0:
        sys.exit(f"shoal {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def active_workers(cwd: Path) -> int:
    rows = json.loads(shoal("workers", "--json", cwd=cwd).stdout)
    return sum(1 for w in rows if w["state"] == "active")


def bring_up(work: Path, lab: SshLab) -> tuple[float, float]:
    """Seconds from `shoal up` to three registered workers: cold, then warm."""
    (work / "hosts.yaml").write_text(lab.inventory(**{h.name: {"slots": SLOTS} for h in lab.hosts}))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with (work / "boss.log").open("w") as log:
        boss = subprocess.Popen(
            [sys.executable, "-m", "shoal", "boss", "--listen", "127.0.0.1:0"],
            cwd=work,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        while not (work / ".shoal" / "boss.json").exists():
            time.sleep(0.05)
        times = []
        for _ in ("cold", "warm"):
            start = time.perf_counter()
            shoal("up", "--hosts", "hosts.yaml", cwd=work)
            while active_workers(work) < HOSTS:
                time.sleep(0.02)
            times.append(time.perf_counter() - start)
            shoal("down", cwd=work)
            while active_workers(work) > 0:
                time.sleep(0.05)
        return times[0], times[1]
    finally:
        shoal("down", cwd=work, check=False)
        boss.terminate()
        boss.wait(15)


def shoal_run(work: Path, tasks: Path) -> tuple[float, float]:
    """Wall time of `shoal run --hosts`, and from the first task's start to the last one's end."""
    state = work / f"state-{time.monotonic_ns()}"
    start = time.perf_counter()
    shoal("run", str(tasks), "--hosts", "hosts.yaml", "--state", str(state), "-q", cwd=work)
    wall = time.perf_counter() - start
    with sqlite3.connect(state / "shoal.db") as db:
        first, last = db.execute("SELECT min(assigned), max(ended) FROM attempts").fetchone()
    shutil.rmtree(state, ignore_errors=True)
    return wall, last - first


def parallel_run(work: Path, lab: SshLab, n: int, master: bool) -> float | None:
    """Wall time of GNU parallel over the hosts; None when it failed (it says why on stderr).

    GNU parallel 20221122 fails now and then on this machine ("Cannot append
    to buffer file", "Output is incomplete"): a run it failed is reported and
    left out of its median, not the end of the benchmark.
    """
    ssh = (
        f"ssh -i {lab.key} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no "
        f"-o UserKnownHostsFile={lab.root / 'known_hosts'}"
    )
    logins = work / "sshloginfile"
    logins.write_text("".join(f"{SLOTS}/root@{h.addr}\n" for h in lab.hosts))
    argv = ["parallel", "--will-cite", "--ssh", ssh, "--sshloginfile", str(logins)]
    if master:
        argv.append("-M")
    # To a file, not a pipe: with -M, a helper of parallel's outlives it and
    # would hold a pipe open.
    with (work / "parallel.log").open("w+") as log:
        start = time.perf_counter()
        proc = subprocess.run(
            [*argv, "true", ":::", *map(str, range(n))], cwd=work, stdout=log, stderr=log
        )
        took = time.perf_counter() - start
        if proc.returncode != 0:
            log.seek(0)
            said = [line for line in log.read().splitlines() if line.strip()]
            sys.stderr.write(
                f"GNU parallel failed ({proc.returncode}): {said[0] if said else 'no output'}\n"
            )
            return None
    return took


def _median(runs: list[float | None]) -> float:
    """The median of the runs that worked (nan if none did)."""
    worked = [r for r in runs if r is not None]
    return statistics.median(worked) if worked else float("nan")


def _seconds(runs: list[float | None]) -> str:
    return ", ".join("failed" if r is None else f"{r:.2f}" for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=600, help="no-op tasks (default 600)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each; the median is shown (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/ssh.py makes network namespaces: run it as root")
    if shutil.which("parallel") is None:
        sys.exit("GNU parallel is not installed (apt-get install parallel)")

    work = Path(tempfile.mkdtemp(prefix="shoal-bench-ssh-"))
    try:
        with bench_lab(work / "lab", HOSTS) as lab:
            say("bring-up: shoal up, cold then warm")
            cold, warm = bring_up(work, lab)
            tasks = work / "noop.json"
            tasks.write_text(
                json.dumps([{"name": f"t{i}", "run": "true"} for i in range(args.tasks)])
            )
            plain_n = min(args.tasks, 200)
            walls: list[float] = []
            inside: list[float] = []
            with_m: list[float | None] = []
            without_m: list[float | None] = []
            for i in range(args.repeat):
                say(f"round {i + 1} of {args.repeat}: shoal run --hosts")
                wall, within = shoal_run(work, tasks)
                walls.append(wall)
                inside.append(within)
                say(f"round {i + 1} of {args.repeat}: parallel -M")
                with_m.append(parallel_run(work, lab, args.tasks, master=True))
                say(f"round {i + 1} of {args.repeat}: parallel")
                without_m.append(parallel_run(work, lab, plain_n, master=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.tasks
    rate = {
        "shoal": n / statistics.median(walls),
        "parallel -M": n / _median(with_m),
        "parallel": plain_n / _median(without_m),
    }
    print(f"{HOSTS} ssh hosts (network namespaces on this machine, {os.cpu_count()} cores)")
    print(f"  bring-up of {HOSTS} workers with shoal up: cold {cold:.2f} s, warm {warm:.2f} s")
    print(
        f"{n} no-op tasks, {SLOTS} at once a host, median of {args.repeat} runs (of those that worked)"
    )
    for name, r in rate.items():
        print(f"  {name:12s} {r:8.0f} tasks/s")
    print("  each run's seconds: shoal " + ", ".join(f"{w:.2f}" for w in walls))
    print("                      parallel -M " + _seconds(with_m))
    print("                      parallel    " + _seconds(without_m) + f" ({plain_n} tasks)")
    print(f"  shoal / GNU parallel -M: {rate['shoal'] / rate['parallel -M']:.2f}x")
    print(f"  shoal / GNU parallel:    {rate['shoal'] / rate['parallel']:.2f}x")
    print(
        f"  shoal from the first task's start to the last one's end: "
        f"{n / statistics.median(inside):.0f} tasks/s"
    )
    if args.json:
        print(json.dumps({"bring_up": {"cold": cold, "warm": warm}, "rate": rate}))


if __name__ == "__main__":
    main()

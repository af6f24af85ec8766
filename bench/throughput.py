#!/usr/bin/env python3
"""Throughput and latency of ``shoal run`` against xargs and GNU parallel.

In one invocation, on this machine:

* N no-op tasks (``true``) through ``shoal run -j 2``, ``xargs -P 2`` and
  GNU ``parallel -j 2``: tasks per second for each, and the ratios;
* a chain of M tasks, each after the one before, through ``shoal run``:
  milliseconds per hop;
* ``shoal run`` of one no-op task, the whole command: its median wall time,
  next to the Python interpreter's own start-up and GNU parallel's one task;
* a ``shoal boss`` on loopback over plain HTTP, HTTPS (``--tls``) and mutual
  TLS (``--mtls``): the latency of one sync on a kept-alive connection (p50,
  p99) and on a new one (its handshake included), and the throughput of N
  no-op tasks through ``--jobs`` workers, each as a ratio to plain HTTP.

Every shoal figure includes everything a user waits for: starting the boss
and the workers, SQLite commits of every state change, and shutting down.

Each row ends with the issue's target for this machine (issue 18).

    python bench/throughput.py [--tasks 2000] [--chain 200] [--repeat 3] [--syncs 2000]
    python bench/throughput.py --only-local      # the rows above the transports
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
from typing import Any

TRANSPORTS = {"http": [], "https": ["--tls"], "mtls": ["--mtls"]}


def timed(
    cmd: list[str], *, cwd: Path, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return elapsed


def shoal_run(task_file: Path, work: Path, jobs: int) -> tuple[float, float]:
    """Wall time of `shoal run`, and the time from the first task's start to the last one's end."""
    state = work / f"state-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "shoal", "run", str(task_file), "-j", str(jobs)]
    try:
        wall = timed([*cmd, "--state", str(state), "--quiet"], cwd=work)
        with sqlite3.connect(state / "shoal.db") as db:
            first, last = db.execute("SELECT min(assigned), max(ended) FROM attempts").fetchone()
        return wall, last - first
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _shoal(*args: str) -> list[str]:
    return [sys.executable, "-m", "shoal", *args]


def _wait_for(path: Path, what: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _sync_latency(url: str, token: str, tls: Any, syncs: int) -> dict[str, float]:
    """Milliseconds per sync (no work to give): kept alive (p50, p99), and each on a new connection."""
    from shoal import protocol as p
    from shoal.agent.client import AgentClient

    client = AgentClient(url, token, tls=tls)
    me = client.register(p.Registration(name="bench", host="bench", slots=1))
    request = p.SyncRequest(worker_id=me.worker_id, free_slots=0, wait=0)
    for _ in range(20):  # warm up
        client.sync(request)
    kept: list[float] = []
    for _ in range(syncs):
        start = time.perf_counter()
        client.sync(request)
        kept.append((time.perf_counter() - start) * 1000)
    fresh: list[float] = []
    for _ in range(max(20, syncs // 10)):
        client.drop_connection()
        start = time.perf_counter()
        client.sync(request)
        fresh.append((time.perf_counter() - start) * 1000)
    client.goodbye(me.worker_id)
    client.drop_connection()
    return {
        "p50": statistics.median(kept),
        "p99": _percentile(kept, 0.99),
        "new_p50": statistics.median(fresh),
    }


def _through_boss(noop: Path, state: Path, jobs: int) -> float:
    """Tasks per second from the first task's start to the last one's end, ``jobs`` workers."""
    subprocess.run(
        _shoal("submit", str(noop), "--state", str(state)), check=True, capture_output=True
    )
    workers = [
        subprocess.Popen(
            _shoal("worker", "--state", str(state), "--slots", "1", "--quiet", "--idle-exit", "2"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(jobs)
    ]
    try:
        for w in workers:
            w.wait(600)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    with sqlite3.connect(state / "shoal.db") as db:
        count, first, last = db.execute(
            "SELECT count(*), min(assigned), max(ended) FROM attempts WHERE state = 'succeeded'"
        ).fetchone()
    return float(count) / (last - first)


def transports(work: Path, noop: Path, jobs: int, syncs: int) -> dict[str, dict[str, float]]:
    """One boss per transport (plain HTTP, HTTPS, mTLS) on loopback: its figures."""
    from shoal.agent.client import TlsFiles

    figures: dict[str, dict[str, float]] = {}
    for mode, flags in TRANSPORTS.items():
        state = work / f"boss-{mode}"
        if flags:
            subprocess.run(
                _shoal("certs", "init", "--state", str(state)), check=True, capture_output=True
            )
        boss = subprocess.Popen(
            _shoal("boss", "--listen", "127.0.0.1:0", "--state", str(state), *flags),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            info = _wait_for(state / "boss.json", f"the {mode} boss")
            certs = state / "certs"
            tls = (
                TlsFiles(str(certs / "ca.crt"), str(certs / "cli.crt"), str(certs / "cli.key"))
                if flags
                else None
            )
            figures[mode] = _sync_latency(info["url"], info["token"], tls, syncs)
            figures[mode]["rate"] = _through_boss(noop, state, jobs)
        finally:
            boss.terminate()
            boss.wait(30)
    return figures


def print_transports(figures: dict[str, dict[str, float]], tasks: int, jobs: int) -> None:
    base = figures["http"]
    print(f"a shoal boss on loopback: one sync (ms) and {tasks} no-op tasks through {jobs} workers")
    print(
        f"  {'':6s} {'p50':>7s} {'p99':>7s} {'new conn':>9s} {'tasks/s':>8s}   ratio to http: p50, p99, tasks/s"
    )
    for mode, f in figures.items():
        print(
            f"  {mode:6s} {f['p50']:7.2f} {f['p99']:7.2f} {f['new_p50']:9.2f} {f['rate']:8.0f}   "
            f"{f['p50'] / base['p50']:.2f}x, {f['p99'] / base['p99']:.2f}x, "
            f"{f['rate'] / base['rate']:.2f}x"
        )


def one_task(args: argparse.Namespace, work: Path) -> dict[str, float]:
    """Median wall time of `shoal run` of one no-op task, and of its baselines, interleaved."""
    one = work / "one.json"
    one.write_text(json.dumps([{"name": "one", "run": "true"}]))
    times: dict[str, list[float]] = {"shoal": [], "python": []}
    parallel = shutil.which("parallel")
    if parallel:
        times["parallel"] = []
    for _ in range(args.one_repeat):
        times["shoal"].append(shoal_run(one, work, args.jobs)[0])
        times["python"].append(timed([sys.executable, "-c", "pass"], cwd=work))
        if parallel:
            times["parallel"].append(
                timed([parallel, "--will-cite", "-j", str(args.jobs), "true", ":::", "0"], cwd=work)
            )
    medians = {k: statistics.median(v) for k, v in times.items()}
    spread = f"{min(times['shoal']):.3f}-{max(times['shoal']):.3f}"
    print(f"shoal run of 1 no-op task, whole command, median of {args.one_repeat} (s):")
    print(f"  shoal     {medians['shoal']:.3f}   (range {spread})   target <= 0.300")
    print(f"  python -c pass {medians['python']:.3f}   (the interpreter's start alone)")
    if "parallel" in medians:
        print(
            f"  GNU parallel {medians['parallel']:.3f}   "
            f"shoal / GNU parallel: {medians['shoal'] / medians['parallel']:.2f}x the time"
        )
    return medians


def compare_tools(args: argparse.Namespace, work: Path, noop: Path) -> dict[str, Any]:
    """shoal run against xargs and GNU parallel, and a chain through shoal run."""
    chain = work / "chain.json"
    chain.write_text(
        json.dumps(
            [{"name": "c0", "run": "true"}]
            + [
                {"name": f"c{i}", "run": "true", "after": [f"c{i - 1}"]}
                for i in range(1, args.chain)
            ]
        )
    )
    lines = "".join(f"{i}\n" for i in range(args.tasks)).encode()
    tools: dict[str, list[float]] = {"shoal": [], "xargs": []}
    in_run: list[float] = []
    parallel = shutil.which("parallel")
    if parallel:
        tools["parallel"] = []
    chain_times: list[float] = []
    chain_in_run: list[float] = []
    for _ in range(args.repeat):
        wall, inside = shoal_run(noop, work, args.jobs)
        tools["shoal"].append(wall)
        in_run.append(inside)
        tools["xargs"].append(
            timed(["xargs", "-P", str(args.jobs), "-n", "1", "true"], cwd=work, stdin=lines)
        )
        if parallel:
            tools["parallel"].append(
                timed(
                    [parallel, "--will-cite", "-j", str(args.jobs), "true", ":::"]
                    + [str(i) for i in range(args.tasks)],
                    cwd=work,
                )
            )
        wall, inside = shoal_run(chain, work, args.jobs)
        chain_times.append(wall)
        chain_in_run.append(inside)
    rate = {k: args.tasks / statistics.median(v) for k, v in tools.items()}
    hop_ms = statistics.median(chain_times) / args.chain * 1000
    hop_in_run_ms = statistics.median(chain_in_run) / (args.chain - 1) * 1000
    rate_in_run = args.tasks / statistics.median(in_run)
    print(
        f"{args.tasks} no-op tasks, parallelism {args.jobs}, median of {args.repeat} runs, {os.cpu_count()} cores"
    )
    for name, r in rate.items():
        print(f"  {name:9s} {r:8.0f} tasks/s   ({statistics.median(tools[name]):.2f} s)")
    if "parallel" in rate:
        print(
            f"  shoal / GNU parallel: {rate['shoal'] / rate['parallel']:.2f}x   "
            f"(each run: {_ratios(tools, 'parallel')})   target >= 3.5x"
        )
    else:
        print("  GNU parallel: not installed (apt-get install parallel)")
    print(
        f"  shoal / xargs:        {rate['shoal'] / rate['xargs']:.2f}x   "
        f"(each run: {_ratios(tools, 'xargs')})   target >= 0.7x"
    )
    print(f"  shoal from the first task's start to the last one's end: {rate_in_run:.0f} tasks/s")
    hops = ", ".join(f"{t / args.chain * 1000:.2f}" for t in chain_times)
    print(
        f"chain of {args.chain} tasks through shoal run: {hop_ms:.2f} ms per hop with start-up "
        f"({statistics.median(chain_times):.2f} s in all; each run: {hops})   target <= 2.5\n"
        f"  {hop_in_run_ms:.2f} ms per hop once running"
    )
    return {
        "rate": rate,
        "shoal_rate_in_run": rate_in_run,
        "chain_ms_per_hop": hop_ms,
        "chain_ms_per_hop_in_run": hop_in_run_ms,
    }


def _ratios(tools: dict[str, list[float]], baseline: str) -> str:
    """shoal's rate over the baseline's, run by run (each pair ran back to back)."""
    return ", ".join(f"{b / a:.2f}" for a, b in zip(tools["shoal"], tools[baseline], strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks (default 2000)")
    parser.add_argument(
        "--chain", type=int, default=200, help="length of the dependency chain (default 200)"
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="parallelism for every tool (default 2)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each; the median is shown (default 3)"
    )
    parser.add_argument(
        "--syncs", type=int, default=2000, help="syncs timed per transport (default 2000)"
    )
    parser.add_argument(
        "--one-repeat",
        type=int,
        default=9,
        help="runs of the one-task command; the median is shown (default 9)",
    )
    parser.add_argument(
        "--only-local",
        action="store_true",
        help="only shoal run against xargs and GNU parallel, the chain and one task",
    )
    parser.add_argument(
        "--only-transports",
        action="store_true",
        help="only the plain HTTP / HTTPS / mTLS comparison",
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    figures: dict[str, Any] = {}
    try:
        noop = work / "noop.json"
        noop.write_text(json.dumps([{"name": f"t{i}", "run": "true"} for i in range(args.tasks)]))
        if not args.only_transports:
            figures = compare_tools(args, work, noop)
            figures["one_task"] = one_task(args, work)
        if not args.only_local:
            figures["transports"] = transports(work, noop, args.jobs, args.syncs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if "transports" in figures:
        print_transports(figures["transports"], args.tasks, args.jobs)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

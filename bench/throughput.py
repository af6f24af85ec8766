#!/usr/bin/env python3
"""Throughput and latency of ``shoal run`` against xargs and GNU parallel.

In one invocation, on this machine:

* N no-op tasks (``true``) through ``shoal run -j 2``, ``xargs -P 2`` and
  GNU ``parallel -j 2``: tasks per second for each, and the ratios;
* a chain of M tasks, each after the one before, through ``shoal run``:
  milliseconds per hop.

Every shoal figure includes everything a user waits for: starting the boss
and the workers, SQLite commits of every state change, and shutting down.

    python bench/throughput.py [--tasks 2000] [--chain 200] [--repeat 3]
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
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="shoal-bench-"))
    try:
        noop = work / "noop.json"
        noop.write_text(json.dumps([{"name": f"t{i}", "run": "true"} for i in range(args.tasks)]))
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
    finally:
        shutil.rmtree(work, ignore_errors=True)

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
        print(f"  shoal / GNU parallel: {rate['shoal'] / rate['parallel']:.2f}x")
    else:
        print("  GNU parallel: not installed (apt-get install parallel)")
    print(f"  shoal / xargs:        {rate['shoal'] / rate['xargs']:.2f}x")
    print(f"  shoal from the first task's start to the last one's end: {rate_in_run:.0f} tasks/s")
    print(
        f"chain of {args.chain} tasks through shoal run: {hop_ms:.2f} ms per hop with start-up "
        f"({statistics.median(chain_times):.2f} s in all), {hop_in_run_ms:.2f} ms per hop once running"
    )
    if args.json:
        figures = {
            "rate": rate,
            "shoal_rate_in_run": rate_in_run,
            "chain_ms_per_hop": hop_ms,
            "chain_ms_per_hop_in_run": hop_in_run_ms,
        }
        print(json.dumps(figures))


if __name__ == "__main__":
    main()

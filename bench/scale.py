#!/usr/bin/env python3
"""A 100,000-task run through real bosses, driven by many simulated workers.

For each database (SQLite, PostgreSQL) and each number of bosses (one, two
over the same PostgreSQL database), in one invocation:

* the time to submit a 100,000-task run (``POST /v1/runs`` with the whole
  expanded run, as ``shoal submit`` sends it), and ``shoal submit`` itself;
* the boss's memory (RSS) once it holds the run, and at its peak;
* task completions per second through the API: a load generator speaks the
  sync protocol for 200 simulated workers (no process per task: a simulated
  worker "runs" its assignments at once and reports them in its next sync);
* sync latency percentiles, as the simulated workers see them;
* the CPU time the boss(es) and the database server spend per task
  completed: on a shared machine it moves much less than the wall clock.

On PostgreSQL each number of bosses runs twice: with a worker's sync as one
call to the server-side function (``shoal_sync``), and as the baseline,
statement by statement (``SHOAL_PG_SYNC=statements``); ``--no-baseline``
skips the latter. The ratios printed at the end are between rows of the
same invocation.

The bosses are real ``shoal boss`` processes; PostgreSQL is a throwaway
cluster (``scripts/throwaway-postgres``) with its default durability.

    python bench/scale.py [--tasks 100000] [--workers 200] [--slots 4]
                          [--seconds 20] [--only sqlite|postgresql] [--no-baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench0123456789abcdef0123456789ab"


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Http:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (the load must be cheap)."""

    def __init__(self, url: str) -> None:
        hostport = url.split("://", 1)[1].rstrip("/")
        host, port = hostport.rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: Any) -> Any:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        body = json.dumps(payload, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await self.reader.readexactly(length)
        if not status_line.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"{path}: {status_line!r} {data[:300]!r}")
        return json.loads(data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def simulated_worker(
    url: str, name: str, slots: int, until: float, latencies: list[float], done: list[int]
) -> None:
    http = Http(url)
    reg = await http.post(
        "/v1/workers", {"name": name, "host": "bench", "slots": slots, "labels": {}}
    )
    worker_id = reg["worker_id"]
    held: list[dict[str, Any]] = []
    try:
        while time.perf_counter() < until:
            now = time.time()
            finished = [
                {
                    "attempt_id": a["attempt_id"],
                    "outcome": "succeeded",
                    "exit_code": 0,
                    "started": now,
                    "ended": now,
                    "run_id": a["run_id"],
                    "task": a["task"],
                }
                for a in held
            ]
            start = time.perf_counter()
            answer = await http.post(
                "/v1/sync",
                {
                    "worker_id": worker_id,
                    "finished": finished,
                    "running": [],
                    "free_slots": slots,
                    # Like a real worker: wait at the boss only with nothing to report.
                    "wait": 0.0 if finished else 1.0,
                },
            )
            if finished or answer.get("assignments"):
                latencies.append(time.perf_counter() - start)
            done[0] += len(finished)
            held = answer.get("assignments", [])
            if not held and not finished:
                if time.perf_counter() < until:
                    done[1] += 1  # a worker left before the end: it found no work
                break  # nothing left
            if not held:
                continue  # the last reports; the next sync finds nothing
    finally:
        http.close()


def generate(urls: list[str], workers: int, slots: int, seconds: float) -> dict[str, Any]:
    """Run the simulated workers against the bosses (split evenly); the figures."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    latencies: list[float] = []
    done = [0, 0]  # tasks completed, workers that left early

    async def main() -> float:
        until = time.perf_counter() + seconds
        start = time.perf_counter()
        await asyncio.gather(
            *[
                simulated_worker(urls[i % len(urls)], f"sim{i}", slots, until, latencies, done)
                for i in range(workers)
            ]
        )
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    latencies.sort()
    return {
        "completed": done[0],
        "seconds": elapsed,
        "per_second": done[0] / elapsed,
        "syncs": len(latencies),
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "left_early": done[1],
    }


def start_boss(work: Path, name: str, db: str, env: dict[str, str]) -> tuple[Any, str]:
    state = work / name
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "shoal", "boss", "--listen", "127.0.0.1:0"),
            *("--state", str(state), "--db", db, "--data", str(work / "data")),
            *("--lease", "120", "--token", TOKEN, "--no-speculate"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(work / f"{name}.log").open("w"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            url = json.loads((state / "boss.json").read_text())["url"]
            return proc, str(url)
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    proc.kill()
    sys.exit(f"boss {name} did not start: {(work / f'{name}.log').read_text()[-2000:]}")


def expanded_run(n: int) -> dict[str, Any]:
    """The run as `shoal submit` sends it: every task spelled out."""
    from shoal import spec as specs

    text = f"name: scale\ntasks:\n  - name: t-{{i}}\n    matrix: {{i: {list(range(n))}}}\n    run: 'true'\n"
    return specs.parse_text(text, path="scale.yaml").to_dict()


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user and system) the processes used, with their reaped children's."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


def server_pids(pg_dir: Path | None) -> list[int]:
    """The PostgreSQL server's processes: its postmaster and every backend."""
    if pg_dir is None:
        return []
    postmaster = int((pg_dir / "data" / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
        except (FileNotFoundError, ValueError, IndexError):
            continue
    return [postmaster, *children]


def measure(
    label: str,
    db: str,
    n_bosses: int,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    pg_dir: Path | None = None,
) -> dict[str, Any]:
    tag = "".join(c for c in label if c.isalnum())
    bosses = [start_boss(work, f"{tag}-boss{i}", db, env) for i in range(n_bosses)]
    procs = [b[0] for b in bosses]
    urls = [b[1] for b in bosses]
    try:
        body = {"spec": expanded_run(args.tasks), "source": "scale.yaml"}
        payload = json.dumps(body).encode()

        async def submit() -> float:
            http = Http(urls[0])
            start = time.perf_counter()
            await http.post("/v1/runs", json.loads(payload))
            elapsed = time.perf_counter() - start
            http.close()
            return elapsed

        submit_s = asyncio.run(submit())
        held_mb = rss_mb(procs[0].pid)
        # CPU, not only the wall clock: on a shared machine it is what stays put.
        boss_cpu, db_cpu = cpu_seconds([p.pid for p in procs]), cpu_seconds(server_pids(pg_dir))
        load = generate(urls, args.workers, args.slots, args.seconds)
        boss_cpu = cpu_seconds([p.pid for p in procs]) - boss_cpu
        db_cpu = cpu_seconds(server_pids(pg_dir)) - db_cpu
        done = max(1, load["completed"])
        load["boss_cpu_ms"] = 1000 * boss_cpu / done
        load["db_cpu_ms"] = 1000 * db_cpu / done
        peak_mb = max(rss_mb(p.pid, "VmHWM") for p in procs)
        return {
            "label": label,
            "submit_s": submit_s,
            "rss_held_mb": held_mb,
            "rss_peak_mb": peak_mb,
            **load,
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()


def shoal_submit_seconds(tasks: int, work: Path, env: dict[str, str]) -> float:
    """`shoal submit` of a task file with a 100,000-entry matrix, end to end."""
    db = f"sqlite:///{work / 'submit.db'}"
    proc, url = start_boss(work, "submit-boss", db, env)
    try:
        (work / "scale.yaml").write_text(
            f"name: scale\ntasks:\n  - name: t-{{i}}\n    matrix: {{i: {list(range(tasks))}}}\n"
            "    run: 'true'\n"
        )
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "shoal", "submit", "scale.yaml", "--boss", url],
            cwd=work,
            env=dict(env, SHOAL_TOKEN=TOKEN),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start
    finally:
        proc.terminate()
        proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=200)
    parser.add_argument("--slots", type=int, default=4, help="slots per simulated worker")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to drive the load")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip PostgreSQL's statement-by-statement syncs (the baseline of the function's)",
    )
    args = parser.parse_args()

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    sys.path.insert(0, str(ROOT / "src"))
    work = Path(tempfile.mkdtemp(prefix="shoal-scale-"))
    pg_dir = Path(tempfile.mkdtemp(prefix="shoal-scale-pg-", dir="/tmp"))
    results = []
    try:
        print(
            f"shoal submit of {args.tasks} tasks: {shoal_submit_seconds(args.tasks, work, env):.2f} s"
        )
        if args.only != "postgresql":
            results.append(
                measure("sqlite, 1 boss", f"sqlite:///{work / 'scale.db'}", 1, args, work, env)
            )
            print(json.dumps(results[-1]))
        if args.only != "sqlite":
            script = str(ROOT / "scripts" / "throwaway-postgres")
            pg = subprocess.run(
                [script, "start", str(pg_dir)], capture_output=True, text=True, check=True
            ).stdout.strip()
            try:
                import psycopg

                # The baselines: each sync statement by statement (pipelined), as before
                # the server-side function (SHOAL_PG_SYNC=statements).
                statements = dict(env, SHOAL_PG_SYNC="statements")
                for n, mode, boss_env in (
                    (1, "statements", statements),
                    (1, "", env),
                    (2, "statements", statements),
                    (2, "", env),
                ):
                    if mode and args.no_baseline:
                        continue
                    name = f"scale{n}{mode}"
                    with psycopg.connect(pg, autocommit=True) as admin:
                        admin.execute(f"CREATE DATABASE {name}")
                    url = pg.rsplit("/", 1)[0] + "/" + name
                    label = f"postgresql, {n} boss{'es' if n > 1 else ''}" + (
                        f", {mode}" if mode else ""
                    )
                    results.append(measure(label, url, n, args, work, boss_env, pg_dir))
                    print(json.dumps(results[-1]))
            finally:
                subprocess.run([script, "stop", str(pg_dir)], check=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(pg_dir, ignore_errors=True)

    print()
    print(
        f"{'':34} {'submit s':>9} {'RSS MB':>7} {'peak MB':>8} {'done/s':>8} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'CPU ms/task':>12}"
    )
    for r in results:
        cpu = r["boss_cpu_ms"] + r["db_cpu_ms"]
        print(
            f"{r['label']:34} {r['submit_s']:9.2f} {r['rss_held_mb']:7.0f} {r['rss_peak_mb']:8.0f}"
            f" {r['per_second']:8.0f} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {cpu:12.2f}"
        )
    print(
        "\nCPU ms/task: CPU time of the boss(es) and the database server per task completed"
        " (not the load generator's); steadier than done/s on a shared machine."
    )
    cost = {r["label"]: r["boss_cpu_ms"] + r["db_cpu_ms"] for r in results}
    rate = {r["label"]: r["per_second"] for r in results}
    ratios = [
        ("postgresql, 1 boss", "sqlite, 1 boss"),
        ("postgresql, 1 boss, statements", "sqlite, 1 boss"),
        ("postgresql, 2 bosses", "postgresql, 1 boss"),
        ("postgresql, 2 bosses, statements", "postgresql, 1 boss, statements"),
        ("postgresql, 1 boss", "postgresql, 1 boss, statements"),
        ("postgresql, 2 bosses", "postgresql, 2 bosses, statements"),
    ]
    print()
    for a, b in ratios:
        if a in rate and b in rate:
            print(
                f"{a} vs {b}: completions/s {rate[a] / rate[b]:.2f}x,"
                f" CPU per task {cost[a] / cost[b]:.2f}x"
            )
    print(
        f"\n{args.workers} simulated workers x {args.slots} slots, {args.seconds:.0f} s of load each; "
        f"p50/p99: sync round trips as the workers saw them (a sync reports up to {args.slots} "
        "tasks and takes as many)."
    )


if __name__ == "__main__":
    main()

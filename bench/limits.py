#!/usr/bin/env python3
"""What hostile input costs the boss: its peak memory, against an idle boss's.

In one invocation, each against a fresh `shoal boss` (its own state folder,
SQLite):

* a 50 MB submission (``POST /v1/runs``, 100,000 tasks of 500 bytes each);
* a YAML alias bomb (a few hundred bytes) through ``shoal submit``;

and, for each, the boss's peak resident memory (VmHWM) and the answer it
gave, beside the same boss's peak when idle (the baseline). Run it with
``SHOAL_SRC=DIR`` to measure another checkout's code (an older commit).

    python bench/limits.py
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = os.environ.get("SHOAL_SRC", str(ROOT / "src"))
TOKEN = "bench0123456789abcdef0123456789ab"

BOMB = """\
tasks:
  - name: t
    run: "true"
    requires:
      a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=SRC, SHOAL_TOKEN=TOKEN)


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Boss:
    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "boss", "--listen", "127.0.0.1:0"],
            cwd=work,
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not (work / ".shoal" / "boss.json").exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the boss did not start")
            time.sleep(0.05)
        time.sleep(0.2)
        self.url = json.loads((work / ".shoal" / "boss.json").read_text())["url"]

    def post(self, path: str, body: bytes) -> tuple[int, str]:
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        try:
            conn.request(
                "POST",
                path,
                body=body,
                headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            return resp.status, resp.read().decode()[:200]
        except OSError as e:
            return 0, str(e)
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:  # still busy with what it was sent
            self.proc.kill()
            self.proc.wait()


def run_measured(command: list[str], cwd: Path, limit: float) -> tuple[str, float]:
    """Run a command to its end (or kill it after ``limit`` s); how it ended, its peak MB."""
    proc = subprocess.Popen(
        command, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + limit
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            said = (proc.stderr.read().decode() if proc.stderr else "").strip()
            last = said.splitlines()[-1][:100] if said else ""
            return f"exit {os.waitstatus_to_exitcode(status)} ({last!r})", usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            return f"killed after {limit:g} s", usage.ru_maxrss / 1024
        time.sleep(0.05)


def big_body() -> bytes:
    tasks = [{"name": f"t-{i}", "run": ["x" * 500]} for i in range(100_000)]
    return json.dumps({"spec": {"name": "big", "tasks": tasks}}).encode()


def main() -> None:
    print(f"code under test: {SRC}")
    with tempfile.TemporaryDirectory() as tmp:
        # The bombs first: a child's peak counts what it shares with this
        # process when it starts, so this process stays small until then.
        boss = Boss(Path(tmp) / "bomb")
        (boss.work / "bomb.yaml").write_text(BOMB)
        started = time.perf_counter()
        outcome, client_mb = run_measured(
            [sys.executable, "-m", "shoal", "submit", "bomb.yaml", "--boss", boss.url],
            boss.work,
            limit=60,
        )
        took = time.perf_counter() - started
        print(
            f"{len(BOMB)}-byte alias bomb via shoal submit: {outcome} in {took:.2f} s, "
            f"shoal submit peak {client_mb:.0f} MB, boss peak {peak_mb(boss.proc.pid):.0f} MB"
        )
        boss.stop()
        outcome, run_mb = run_measured(
            [sys.executable, "-m", "shoal", "run", "bomb.yaml", "-j", "1"], boss.work, limit=60
        )
        print(f"the same bomb via shoal run (boss in-process): {outcome}, peak {run_mb:.0f} MB")

        idle = Boss(Path(tmp) / "idle")
        time.sleep(1)
        print(f"idle boss: peak {peak_mb(idle.proc.pid):.0f} MB")
        idle.stop()

        body = big_body()
        boss = Boss(Path(tmp) / "body")
        started = time.perf_counter()
        status, said = boss.post("/v1/runs", body)
        took = time.perf_counter() - started
        print(
            f"{len(body) / 1e6:.0f} MB submission: answer {status} in {took:.2f} s, "
            f"boss peak {peak_mb(boss.proc.pid):.0f} MB ({said[:90]!r})"
        )
        boss.stop()


if __name__ == "__main__":
    main()

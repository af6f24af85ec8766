#!/usr/bin/env python3
"""How long a dead worker's task waits before it runs again.

Starts `shoal boss` (default settings unless --lease is given) and two
workers on loopback, gives one a long task, kills that worker and everything
it started with SIGKILL (as if its machine died), and measures the time until
the task runs again on the other worker.

    python bench/recovery.py [--lease SECONDS] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import descendants, free_port  # noqa: E402


def shoal(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    out = subprocess.run(
        [sys.executable, "-m", "shoal", *args, "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)


def once(lease: float | None) -> float:
    work = Path(tempfile.mkdtemp(prefix="shoal-recovery-"))
    port = free_port()
    extra = ["--lease", str(lease)] if lease else []
    procs: list[subprocess.Popen[bytes]] = []
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    try:
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "shoal", "boss", "--listen", f"127.0.0.1:{port}", *extra],
                cwd=work,
                **quiet,  # type: ignore[arg-type]
            )
        )
        while not (work / ".shoal" / "boss.json").exists():
            time.sleep(0.05)
        token = (work / ".shoal" / "token").read_text().strip()
        env = dict(os.environ, SHOAL_TOKEN=token)
        url = f"http://127.0.0.1:{port}"

        def worker(name: str) -> subprocess.Popen[bytes]:
            cmd = [
                sys.executable,
                "-m",
                "shoal",
                "worker",
                "--boss",
                url,
                "--slots",
                "1",
                "--name",
                name,
            ]
            proc = subprocess.Popen(cmd, cwd=work, env=env, **quiet)  # type: ignore[arg-type]
            procs.append(proc)
            return proc

        doomed = worker("doomed")
        (work / "t.yaml").write_text("name: r\ntasks:\n  - {name: long, run: sleep 600}\n")
        subprocess.run(
            [sys.executable, "-m", "shoal", "submit", "t.yaml"],
            cwd=work,
            env=env,
            check=True,
            **quiet,
        )  # type: ignore[arg-type]
        while shoal("tasks", "r", cwd=work, env=env)[0]["state"] != "running":
            time.sleep(0.05)
        worker("survivor")
        victims = descendants(doomed.pid)
        doomed.send_signal(signal.SIGKILL)
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        died = time.monotonic()
        while shoal("tasks", "r", cwd=work, env=env)[0]["worker"] != "survivor":
            time.sleep(0.1)
        return time.monotonic() - died
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pid in descendants(os.getpid()):
            os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--lease", type=float, default=None, help="boss lease (default: shoal's own)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    times = [once(args.lease) for _ in range(args.repeat)]
    lease = f"{args.lease:g} s" if args.lease else "the default"
    print(
        f"a dead worker's task ran again after {statistics.median(times):.1f} s "
        f"(median of {len(times)}, lease {lease})"
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Workers as Slurm jobs: how long from ``shoal up`` to workers registered.

(Docker and Vagrant: ``bench/engines.py``.) ``--engine slurm`` (or ``all``) starts the engine's test lab, a ``shoal
boss`` next to it, and measures against a baseline taken in the same round:
the same number of ``local`` workers (``provider: local``) brought up the
same way, so the difference is what the engine adds.

* ``slurm``: the tests' one-node Slurm cluster on loopback
  (``tests/slurmlab.py``: munged, slurmctld and slurmd started here, needs
  root and Debian's slurmctld, slurmd, slurm-client and munge). N one-CPU
  jobs (``--workers``, default 2: the node has 2 CPUs). Each round:

  - bring-up: ``shoal up --pool`` with ``count: N``, from the command's
    start to the N-th worker registered (its ``registered`` time in the
    boss's database), split at the moment the last job was seen RUNNING
    in ``squeue`` (polled every 0.05 s): Slurm's scheduling, then the job
    script and the agent; the local baseline likewise;
  - a run: ``shoal run --pool`` with ``count: N`` and 3N tasks of 0.5 s:
    its wall time, against the same on N local workers, and from the
    command's exit to ``squeue`` empty (the jobs drained and cancelled).

    sudo python bench/slurm.py [--engine slurm|all] [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driver import POLL, Driver, row, say, wait_registered

WIDTH = 32  # of a figure's name in the table


# -- what every engine's part uses ----------------------------------------------


def pool_file(path: Path, provider: str, **fields: object) -> None:
    lines = ["pools:", "  - name: w", f"    provider: {provider}"]
    lines += [f"    {k}: {v}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")


def local_up(driver: Driver, n: int) -> float:
    """The baseline: seconds from ``shoal up`` to N local workers registered."""
    cwd = driver.folder("local-up")
    pool_file(cwd / "pools.yaml", "local", count=n)
    with driver.boss(cwd):
        start = time.time()
        driver.shoal("up", "--pool", "pools.yaml", cwd=cwd)
        took = wait_registered(cwd, n)[-1] - start
        driver.shoal("down", cwd=cwd)
    return took


def local_run(driver: Driver, n: int, tasks: Path) -> float:
    """The baseline: the wall time of ``shoal run`` on N local workers."""
    cwd = driver.folder("local-run")
    pool_file(cwd / "pools.yaml", "local", count=n)
    shutil.copy(tasks, cwd / "tasks.json")
    start = time.time()
    driver.shoal("run", "tasks.json", "--pool", "pools.yaml", "-j", "0", "-q", cwd=cwd)
    return time.time() - start


# -- slurm --------------------------------------------------------------------------


class QueueWatch:
    """Polls ``squeue`` on a thread: when N jobs were first all RUNNING, and when none was left."""

    def __init__(self, lab: Any, n: int) -> None:
        self.lab = lab
        self.n = n
        self.running_at: float | None = None
        self.empty_at: float | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._poll, name="squeue", daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        seen_jobs = False
        while not self.stopping.is_set():
            jobs = self.lab.jobs()
            now = time.time()
            seen_jobs = seen_jobs or bool(jobs)
            running = [j for j in jobs if j.state == "RUNNING"]
            if self.running_at is None and len(running) >= self.n:
                self.running_at = now
            if seen_jobs and not jobs and self.empty_at is None:
                self.empty_at = now
            self.stopping.wait(POLL)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)

    def wait_empty(self, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while self.empty_at is None:
            if time.monotonic() > deadline:
                self.stop()
                sys.exit(f"jobs left in squeue after {timeout:.0f} s: {self.lab.jobs()}")
            time.sleep(POLL)
        self.stop()
        return self.empty_at


def slurm_up(driver: Driver, lab: Any, n: int) -> tuple[float, float]:
    """Seconds from ``shoal up`` to N jobs running, and from there to N workers registered."""
    cwd = driver.folder("slurm-up")
    pool_file(cwd / "pools.yaml", "slurm", count=n, cpus=1)
    with driver.boss(cwd):
        watch = QueueWatch(lab, n)
        start = time.time()
        driver.shoal("up", "--pool", "pools.yaml", cwd=cwd)
        last = wait_registered(cwd, n)[-1]
        watch.stop()
        driver.shoal("down", cwd=cwd)
    if lab.wait_no_jobs():
        sys.exit(f"jobs left in squeue after shoal down: {lab.jobs()}")
    running = watch.running_at if watch.running_at is not None else last
    return running - start, last - running


def slurm_run(driver: Driver, lab: Any, n: int, tasks: Path) -> tuple[float, float]:
    """``shoal run --pool`` on N jobs: its wall time, and from its exit to squeue empty."""
    cwd = driver.folder("slurm-run")
    pool_file(cwd / "pools.yaml", "slurm", count=n, cpus=1)
    shutil.copy(tasks, cwd / "tasks.json")
    watch = QueueWatch(lab, n)
    start = time.time()
    driver.shoal("run", "tasks.json", "--pool", "pools.yaml", "-j", "0", "-q", cwd=cwd)
    exited = time.time()
    empty = watch.wait_empty()
    return exited - start, empty - exited


def slurm(args: argparse.Namespace, work: Path) -> dict[str, list[float]]:
    """The slurm part: its figures by name, one value per round."""
    try:
        from tests.slurmlab import slurm_lab
    except ImportError as e:  # pragma: no cover - the tests' own module
        sys.exit(f"the Slurm lab (tests/slurmlab.py) cannot be imported: {e}")
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("sbatch", "squeue", "scancel")):
        sys.exit(
            "the slurm part starts its own cluster: run it as root where Debian's "
            "slurmctld, slurmd, slurm-client and munge are installed"
        )
    n = args.workers
    figures: dict[str, list[float]] = {
        k: []
        for k in (
            "slurm_up_to_running",
            "slurm_running_to_registered",
            "slurm_up_total",
            "local_up_total",
            "slurm_run_wall",
            "local_run_wall",
            "slurm_exit_to_no_job",
        )
    }
    tasks = work / "tasks.json"
    tasks.write_text(
        json.dumps([{"name": f"t{i}", "run": "sleep 0.5", "timeout": 60} for i in range(3 * n)])
    )
    with slurm_lab(work / "slurm-lab") as lab:
        driver = Driver(work, lab.env())
        for i in range(args.repeat):
            say(f"slurm, round {i + 1} of {args.repeat}: shoal up, then shoal run")
            queued, started = slurm_up(driver, lab, n)
            figures["slurm_up_to_running"].append(queued)
            figures["slurm_running_to_registered"].append(started)
            figures["slurm_up_total"].append(queued + started)
            figures["local_up_total"].append(local_up(driver, n))
            wall, drained = slurm_run(driver, lab, n, tasks)
            figures["slurm_run_wall"].append(wall)
            figures["slurm_exit_to_no_job"].append(drained)
            figures["local_run_wall"].append(local_run(driver, n, tasks))
    return figures


# -- the engines, and the figures -----------------------------------------------------

# Each engine's part: (args, its work folder) -> its figures, by name, one value a round.
ENGINES: dict[str, Callable[[argparse.Namespace, Path], dict[str, list[float]]]] = {
    "slurm": slurm,
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engine", choices=[*ENGINES, "all"], default="all", help="which engine (default all)"
    )
    parser.add_argument(
        "--workers", type=int, default=2, help="workers (machines) in each pool (default 2)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of each; the median is shown (default 3)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    if args.workers < 1 or args.repeat < 1:
        sys.exit("--workers and --repeat take a number of 1 or more")
    chosen = list(ENGINES) if args.engine == "all" else [args.engine]
    figures: dict[str, dict[str, list[float]]] = {}
    for engine in chosen:
        work = Path(tempfile.mkdtemp(prefix=f"shoal-bench-{engine}-"))
        try:
            figures[engine] = ENGINES[engine](args, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for engine, values in figures.items():
        print(f"{engine}: {args.workers} workers, median of {args.repeat} rounds (each round)")
        for name, each in values.items():
            print(row(name, each, WIDTH))
    if args.json:
        print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()

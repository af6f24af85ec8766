"""What the engine benches share: the real ``shoal`` command, a boss, and the figures.

``bench/clouds.py``, ``bench/engines.py`` and ``bench/slurm.py`` each bring
machines up next to a running ``shoal boss`` and time them until their
workers registered (read from the boss's database, never from a log line).
Imported by those scripts (their folder is first on ``sys.path`` when one
runs); importing it also puts this checkout and its ``src`` on ``sys.path``,
for ``tests.*`` labs and ``shoal`` itself.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
for _path in (str(ROOT), SRC):
    if _path not in sys.path:
        sys.path.insert(0, _path)

POLL = 0.05

__all__ = ["POLL", "ROOT", "Driver", "registered", "row", "say", "wait_registered"]


def say(text: str) -> None:
    """A line of progress on stderr (the figures alone go to stdout)."""
    sys.stderr.write(f"… {text}\n")
    sys.stderr.flush()


def row(name: str, values: list[float], width: int) -> str:
    """One figure: its median over the rounds, then each round's value in brackets."""
    each = "  ".join(f"{v:6.2f}" for v in values)
    return f"  {name:{width}s} {statistics.median(values):6.2f} s   ({each})"


class Driver:
    """The real ``shoal`` command in folders of one work folder, with an engine's environment.

    ``env`` is added to this process's environment; this checkout's ``src``
    leads ``PYTHONPATH`` (so that the ``shoal`` timed is this copy), and no
    ``SHOAL_BOSS`` or ``SHOAL_TOKEN`` of the caller's leaks into a round.
    """

    def __init__(self, work: Path, env: Mapping[str, str], *, timeout: float = 600) -> None:
        self.work = work
        self.env = {**os.environ, **env}
        self.env.pop("SHOAL_BOSS", None)
        self.env.pop("SHOAL_TOKEN", None)
        path = [p for p in self.env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if SRC not in path:
            self.env["PYTHONPATH"] = os.pathsep.join([SRC, *path])
        self.timeout = timeout  # for one shoal command
        self.rounds = 0

    def folder(self, what: str) -> Path:
        """A new folder for one round (``WHAT-N``)."""
        self.rounds += 1
        path = self.work / f"{what}-{self.rounds}"
        path.mkdir(parents=True)
        return path

    def shoal(self, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``shoal ARGS`` in ``cwd``, its output captured; the bench ends if it fails."""
        proc = subprocess.run(
            [sys.executable, "-m", "shoal", *args],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=self.timeout,
        )
        if check and proc.returncode != 0:
            said = (proc.stdout[-2000:] + proc.stderr[-2000:]).strip()
            sys.exit(f"shoal {' '.join(args)} failed ({proc.returncode}): {said}")
        return proc

    @contextlib.contextmanager
    def boss(self, cwd: Path) -> Iterator[None]:
        """A ``shoal boss`` serving from ``cwd``'s state folder, stopped by its PID on leaving.

        Whatever ``shoal up`` started there is taken down first.
        """
        with (cwd / "boss.log").open("w") as log:
            boss = subprocess.Popen(
                [sys.executable, "-m", "shoal", "boss", "--listen", "127.0.0.1:0"],
                cwd=cwd,
                env=self.env,
                stdout=log,
                stderr=log,
            )
        try:
            deadline = time.monotonic() + 60
            while not (cwd / ".shoal" / "boss.json").exists():
                if boss.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"shoal boss did not start: {(cwd / 'boss.log').read_text()[-2000:]}")
                time.sleep(POLL)
            yield
        finally:
            if (cwd / ".shoal" / "up.json").exists():
                self.shoal("down", cwd=cwd, check=False)
            boss.terminate()
            boss.wait(30)


def registered(cwd: Path, names: Collection[str] | None = None) -> list[float]:
    """When each active worker of the boss in ``cwd`` registered (epoch seconds), in order;
    of the workers so named, if ``names`` is given."""
    db = cwd / ".shoal" / "shoal.db"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as con:
        rows = con.execute("SELECT name, registered FROM workers WHERE state = 'active'").fetchall()
    return sorted(float(at) for name, at in rows if names is None or name in names)


def wait_registered(
    cwd: Path, n: int, names: Collection[str] | None = None, *, timeout: float = 300
) -> list[float]:
    """:func:`registered`, once ``n`` workers (or more) have; the bench ends after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        times = registered(cwd, names)
        if len(times) >= n:
            return times
        if time.monotonic() > deadline:
            sys.exit(f"{len(times)} workers registered in {cwd} after {timeout:.0f} s, not {n}")
        time.sleep(POLL)

"""Worker agents as local processes, each in its own session.

Each agent gets its own process group, so a Ctrl-C at the terminal reaches
only ``shoal run``, which then stops the agents in order: SIGTERM (take no
more work) or SIGUSR1 (interrupt what runs), SIGKILL as the last resort.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shoal.statedir import open_private

__all__ = ["LocalWorkers", "last_words"]


def last_words(log: Path, offset: int = 0, returncode: int | None = None) -> str:
    """Why a worker stopped, from its log (written from ``offset`` on).

    The agent's own line (``shoal worker: …``) if it wrote one, else the last
    line that is not one of its JSON events (an ssh client's error, say), else
    how the process ended.
    """
    try:
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read()[-65536:].decode("utf-8", "replace")
    except OSError:
        return "no log"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("shoal worker:"):
            return line.removeprefix("shoal worker:").strip()
    plain = [
        line
        for line in lines
        if not line.startswith("{") and not line.startswith("Warning: Permanently added")
    ]
    if plain:
        return plain[-1]
    if returncode is not None and returncode < 0:
        return f"killed by {signal.Signals(-returncode).name}"
    return f"exit code {returncode} (see {log})"


class LocalWorkers:
    """N worker agents on this machine, started and stopped by PID."""

    def __init__(
        self,
        count: int,
        *,
        boss_url: str,
        token: str,
        slots: int,
        workdir: Path,
        logdir: Path,
        name_prefix: str = "local",
        log_cap: int | None = None,
    ) -> None:
        self.count = count
        self.boss_url = boss_url
        self.token = token
        self.slots = slots
        self.workdir = workdir
        self.logdir = logdir
        self.name_prefix = name_prefix
        self.log_cap = log_cap
        self.procs: list[subprocess.Popen[bytes]] = []
        self._offsets: list[int] = []
        self._told: set[int] = set()

    def start(self) -> None:
        self.logdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = dict(os.environ, SHOAL_TOKEN=self.token)
        src = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = (
            src + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else src
        )
        cap = [f"--log-cap={self.log_cap}"] if self.log_cap is not None else []
        for i in range(self.count):
            log = open_private(self.logdir / f"worker-{i + 1}.log")
            self._offsets.append(log.tell())
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shoal.agent",
                    "--boss",
                    self.boss_url,
                    "--slots",
                    str(self.slots),
                    "--name",
                    f"{self.name_prefix}-{i + 1}",
                    "--workdir",
                    str(self.workdir),
                    "--parent",
                    str(os.getpid()),
                    *cap,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            log.close()
            self.procs.append(proc)

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

    def log_paths(self) -> list[Path]:
        return [self.logdir / f"worker-{i + 1}.log" for i in range(self.count)]

    def exited(self) -> list[tuple[str, str]]:
        """Workers that exited since the last call: (name, why), each told once."""
        out = []
        for i, p in enumerate(self.procs):
            if i not in self._told and p.poll() is not None:
                self._told.add(i)
                log = self.log_paths()[i]
                why = last_words(log, self._offsets[i], p.returncode)
                out.append((f"{self.name_prefix}-{i + 1}", why))
        return out

    def stop(self, *, interrupt: bool = False, timeout: float = 10.0) -> None:
        """Stop every agent: drain (or interrupt), then kill what is left."""
        for p in self.procs:
            # One signal each: two SIGTERMs back to back may arrive as one.
            self._signal(p, signal.SIGUSR1 if interrupt else signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            left = deadline - time.monotonic()
            try:
                p.wait(max(0.0, left))
            except subprocess.TimeoutExpired:
                self._signal(p, signal.SIGKILL)
                p.wait()

    @staticmethod
    def _signal(p: subprocess.Popen[bytes], sig: int) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)

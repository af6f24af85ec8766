"""Local processes that hold agents: found again by PID and start time.

A PID alone may have been reused by the time someone looks for it again
(``shoal down`` after the keeper was killed, say); a PID with the clock tick
its process started at names one process for good. Providers whose machines
are local processes (an agent, an ssh client) use ``"PID:TICKS"`` as their
provider id.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

__all__ = ["alive", "handle", "last_words", "parse_handle", "send", "start_ticks"]


def start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie runs no more, whoever reaps it
        return None
    return int(fields[19])


def alive(pid: int, ticks: int | None) -> bool:
    """Whether the process that started at ``ticks`` still runs."""
    return ticks is not None and start_ticks(pid) == ticks


def handle(pid: int) -> str:
    """``"PID:TICKS"`` for a process of ours that runs now."""
    return f"{pid}:{start_ticks(pid)}"


def parse_handle(text: str) -> tuple[int, int | None] | None:
    """The PID and start ticks a handle names, or None if it names none."""
    pid, _, ticks = text.partition(":")
    if not pid.isdigit():
        return None
    return int(pid), int(ticks) if ticks.isdigit() else None


def send(text: str, sig: int = signal.SIGTERM) -> bool:
    """Signal the process a handle names if it still runs; whether it did."""
    found = parse_handle(text)
    if found is None or not alive(*found):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(found[0], sig)
    return True


def last_words(log: Path, offset: int = 0, returncode: int | None = None) -> str:
    """How a process that never said goodbye to the boss ended, from its log.

    Only for an agent the boss has no reason from (it never registered, or it
    was killed): its own line (``shoal worker: …``) if it wrote one, else the
    last line that is not a JSON event (an ssh client's error, say), else how
    the process ended.
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

"""How busy a worker's machine is: CPU, load and memory, for the boss's dashboard.

Read from ``/proc`` where there is one (Linux), else from
``os.getloadavg``; a figure that cannot be read is left out. Standard
library only, Python 3.8.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Dict, Optional, Tuple

__all__ = ["UsageProbe"]

# A fresh reading at most this often: a sync does not wait on /proc.
EVERY = 2.0


def _cpu_times(path: str = "/proc/stat") -> Optional[Tuple[float, float]]:
    """The machine's (busy, total) CPU time so far, in ticks; None without /proc."""
    try:
        with open(path) as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [float(x) for x in fields[1:]]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)  # idle + iowait
    total = sum(ticks[:8])  # guest time is counted in user time already
    return total - idle, total


def _memory(path: str = "/proc/meminfo") -> Dict[str, float]:
    """Bytes of memory in use and in all; empty without /proc."""
    found: Dict[str, float] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    found[key] = float(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    if "MemTotal" not in found or "MemAvailable" not in found:
        return {}
    return {
        "memory_used": found["MemTotal"] - found["MemAvailable"],
        "memory_total": found["MemTotal"],
    }


class UsageProbe:
    """Readings of the machine's usage, each new one at most every :data:`EVERY` seconds."""

    def __init__(self) -> None:
        self._last_at = 0.0
        self._last_cpu = _cpu_times()

    def reading(self) -> Optional[Dict[str, float]]:
        """A new reading, or None when the last one is still fresh."""
        now = time.monotonic()
        if now - self._last_at < EVERY:
            return None
        self._last_at = now
        usage: Dict[str, float] = {"cores": float(os.cpu_count() or 1)}
        with contextlib.suppress(OSError):
            usage["load"] = os.getloadavg()[0]
        cpu = _cpu_times()
        if cpu is not None and self._last_cpu is not None and cpu[1] > self._last_cpu[1]:
            usage["cpu"] = 100.0 * (cpu[0] - self._last_cpu[0]) / (cpu[1] - self._last_cpu[1])
        elif "load" in usage:
            # No /proc: the load average over the cores says about as much.
            usage["cpu"] = min(100.0, 100.0 * usage["load"] / usage["cores"])
        self._last_cpu = cpu
        usage.update(_memory())
        return usage

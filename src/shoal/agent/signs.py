"""Signs of life between an agent and what started it (standard library only).

* :func:`lifeline`: an agent started over ssh stops when its standard input
  closes (the connection ended), and drains on a line ``drain``;
* :func:`touch_alive`: an agent on a rented VM touches a file while it runs,
  which the VM's watchdog reads to power an idle VM off.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

__all__ = ["ALIVE_EVERY", "lifeline", "touch_alive"]


ALIVE_EVERY = 30.0


def touch_alive(path: str) -> None:
    """Touch ``path`` now and every 30 s: an agent runs here (the VM's watchdog reads it)."""
    while True:
        try:
            with open(path, "a"):
                pass
            os.utime(path, None)
        except OSError:
            pass  # the watchdog then stops an idle VM a little early: no worse
        time.sleep(ALIVE_EVERY)


def lifeline(agent: Any) -> None:
    """Stop the agent at once when standard input reaches its end.

    A line ``drain`` before that asks it to finish what runs and then exit.
    """
    try:
        for line in sys.stdin.buffer:
            if line.strip() == b"drain":
                agent.log("drain_requested")
                agent.request_stop()
    except (OSError, ValueError):
        pass
    agent.log("lifeline_closed")
    agent.request_stop()
    agent.request_stop()

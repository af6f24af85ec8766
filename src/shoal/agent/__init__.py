"""The worker agent: standard library only, Python >= 3.11 (see ``shoal.protocol``).

It ships as-is to any host with ``python3`` (see ``shoal.launch``), so
nothing here may import outside the standard library, ``shoal.protocol`` and
``shoal`` itself.
"""

from typing import Any

__all__ = ["Agent", "main"]


def __getattr__(name: str) -> Any:
    # Imported when asked for: the boss's command line uses only the agent's
    # HTTP client (shoal.agent.client), not the worker and its runner.
    if name == "main":
        from shoal.agent.start import main

        return main
    if name == "Agent":
        from shoal.agent.worker import Agent

        return Agent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

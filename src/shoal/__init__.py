"""shoal runs a batch of shell tasks with dependencies across many machines.

The public Python API::

    import shoal

    run = shoal.Run("sweep")
    prep = run.task("prep", "python prep.py > data.csv", outputs=["data.csv"])
    sims = run.task("sim-{seed}", "python sim.py {seed}", matrix={"seed": [1, 2, 3]}, after=prep)
    run.reduce("total", sims)
    result = run.execute(workers=4)

This module imports only the standard library; the API is loaded on first
use, so the worker agent (``shoal.agent``) runs on hosts with ``python3``
alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "BadInput",
    "Handle",
    "Result",
    "Run",
    "ShoalError",
    "SpecError",
    "Task",
    "__version__",
]

if TYPE_CHECKING:
    from shoal.api import Handle, Result, Run, Task
    from shoal.exceptions import BadInput, ShoalError, SpecError

_LAZY = {
    "Run": "shoal.api",
    "Task": "shoal.api",
    "Result": "shoal.api",
    "Handle": "shoal.api",
    "ShoalError": "shoal.exceptions",
    "BadInput": "shoal.exceptions",
    "SpecError": "shoal.exceptions",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'shoal' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    """The API (``dir(shoal)``, completion), not the names this module imports to build it."""
    return sorted(__all__)

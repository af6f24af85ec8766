"""The worker agent: standard library only, Python >= 3.11 (see ``shoal.protocol``).

It ships as-is to any host with ``python3`` (see ``shoal.launch``), so
nothing here may import outside the standard library, ``shoal.protocol`` and
``shoal`` itself.
"""

from shoal.agent.start import main
from shoal.agent.worker import Agent

__all__ = ["Agent", "main"]

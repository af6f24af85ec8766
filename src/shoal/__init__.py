"""shoal runs a batch of shell tasks with dependencies across many machines.

This package's top level imports only the standard library, so that the
worker agent (``shoal.agent``) can run on any host with ``python3``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

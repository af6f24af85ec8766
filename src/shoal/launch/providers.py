"""The launch providers by name: ``providers.get("ssh", site)``.

A provider is found by the name a pool gives; its module is imported only
when it is asked for, so ``shoal run`` never imports what it does not use.
A new provider is one line in ``_KNOWN`` (or :func:`register`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from shoal.exceptions import BadInput
from shoal.launch.contract import Provider, Site

__all__ = ["get", "names", "register"]

# name -> "module:factory", the factory called with the Site.
_KNOWN: dict[str, str | Callable[[Site], Provider]] = {
    "local": "shoal.launch.local:LocalProvider",
    "ssh": "shoal.launch.ssh:SshProvider",
}


def names() -> list[str]:
    """The names of the known providers."""
    return sorted(_KNOWN)


def register(name: str, factory: str | Callable[[Site], Provider]) -> None:
    """Make a provider known by ``name`` (a ``"module:factory"`` path or the factory)."""
    _KNOWN[name] = factory


def get(name: str, site: Site) -> Provider:
    """The provider called ``name``, for a launcher keeping its files in ``site``."""
    factory = _KNOWN.get(name)
    if factory is None:
        raise BadInput(
            f"no launch provider called {name!r} (known: {', '.join(names())}): "
            "check the pool's 'provider'"
        )
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        assert callable(factory)
    return factory(site)

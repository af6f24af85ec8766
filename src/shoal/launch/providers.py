"""The launch providers by name: ``providers.get("ssh", site)``.

A provider is found by the name a pool gives; its module is imported only
when it is asked for, so ``shoal run`` never imports what it does not use.
A new provider is one line in ``_KNOWN`` (or :func:`register`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from shoal.exceptions import BadInput
from shoal.launch.contract import Provider, ProviderSchema, Site

__all__ = ["get", "names", "register", "schema"]

# name -> "module:factory", the factory called with the Site.
_KNOWN: dict[str, str | Callable[[Site], Provider]] = {
    "local": "shoal.launch.local:LocalProvider",
    "ssh": "shoal.launch.ssh:SshProvider",
    # Clouds through libcloud: one provider class, told which cloud.
    "aws": "shoal.launch.cloud.provider:aws",
    "gce": "shoal.launch.cloud.provider:gce",
    "azure": "shoal.launch.cloud.provider:azure",
    "digitalocean": "shoal.launch.cloud.provider:digitalocean",
    "openstack": "shoal.launch.cloud.provider:openstack",
    "opennebula": "shoal.launch.cloud.provider:opennebula",
    # Engines users already run.
    "docker": "shoal.launch.docker:DockerProvider",
    "vagrant": "shoal.launch.vagrant:VagrantProvider",
    "slurm": "shoal.launch.slurm:SlurmProvider",
}


# name -> "module:attribute" of its ProviderSchema: light modules, so that a
# pool file is checked without importing a cloud's library.
_SCHEMAS: dict[str, str | ProviderSchema] = {
    "local": "shoal.launch.local:SCHEMA",
    "ssh": "shoal.launch.ssh.provider:SCHEMA",
    "aws": "shoal.launch.cloud.kinds:AWS",
    "gce": "shoal.launch.cloud.kinds:GCE",
    "azure": "shoal.launch.cloud.kinds:AZURE",
    "digitalocean": "shoal.launch.cloud.kinds:DIGITALOCEAN",
    "openstack": "shoal.launch.cloud.kinds:OPENSTACK",
    "opennebula": "shoal.launch.cloud.kinds:OPENNEBULA",
    "docker": "shoal.launch.docker:SCHEMA",
    "vagrant": "shoal.launch.vagrant:SCHEMA",
    "slurm": "shoal.launch.slurm:SCHEMA",
}


def names() -> list[str]:
    """The names of the known providers."""
    return sorted(_KNOWN)


def register(
    name: str,
    factory: str | Callable[[Site], Provider],
    schema: str | ProviderSchema | None = None,
) -> None:
    """Make a provider known by ``name`` (a ``"module:factory"`` path or the factory)."""
    _KNOWN[name] = factory
    if schema is not None:
        _SCHEMAS[name] = schema


def _unknown(name: str) -> BadInput:
    return BadInput(
        f"no launch provider called {name!r} (known: {', '.join(names())}): "
        "check the pool's 'provider'"
    )


def schema(name: str) -> ProviderSchema:
    """What a pool of provider ``name`` may say (no fields of its own where it declares none)."""
    if name not in _KNOWN:
        raise _unknown(name)
    found = _SCHEMAS.get(name, ProviderSchema(fields={}))
    if isinstance(found, str):
        module, _, attr = found.partition(":")
        found = getattr(importlib.import_module(module), attr)
        assert isinstance(found, ProviderSchema)
    return found


def get(name: str, site: Site) -> Provider:
    """The provider called ``name``, for a launcher keeping its files in ``site``."""
    factory = _KNOWN.get(name)
    if factory is None:
        raise _unknown(name)
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        assert callable(factory)
    return factory(site)

"""What every cloud module shares: :class:`NodeInfo`, the :class:`Adapter` verbs, states.

A cloud module (``aws``, ``gce``, …) is one :class:`Adapter` subclass holding
only where its cloud differs: how the driver is built, and how a VM is
created with its tags, public key, user-data and spot flag. Errors are not
handled here: :class:`~shoal.launch.cloud.api.Cloud` turns every error an
adapter lets out into one line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from shoal.exceptions import BadInput

__all__ = [
    "STATES",
    "Adapter",
    "NodeInfo",
    "absent_if_404",
    "driver_class",
    "endpoint_parts",
    "has_tags",
    "lib",
    "list_price",
    "state_of",
]

STATES = ("pending", "running", "stopping", "stopped", "terminated", "unknown")

# libcloud's NodeState values -> ours.
_NODE_STATES = {
    "pending": "pending",
    "starting": "pending",
    "rebooting": "pending",
    "reconfiguring": "pending",
    "migrating": "pending",
    "updating": "pending",
    "running": "running",
    "stopping": "stopping",
    "stopped": "stopped",
    "suspended": "stopped",
    "paused": "stopped",
    "terminated": "terminated",
}


def lib(module: str) -> Any:
    """One of libcloud's modules, imported when first needed and left untyped.

    libcloud's annotations are partial (each driver's ``ex_`` arguments, a
    size's price that may be None): the adapters use it as ``Any``.
    """
    return importlib.import_module(module)


def driver_class(provider: str) -> Any:
    """libcloud's compute driver class for a ``Provider`` name ("EC2", "GCE", …)."""
    providers = lib("libcloud.compute.providers")
    return providers.get_driver(getattr(providers.Provider, provider))


def state_of(node_state: object) -> str:
    """Our state for one of libcloud's ``NodeState`` values."""
    return _NODE_STATES.get(str(getattr(node_state, "value", node_state)).lower(), "unknown")


@dataclass(frozen=True)
class NodeInfo:
    """One VM as the cloud describes it now."""

    id: str  # what the cloud finds it again by
    name: str
    state: str  # one of STATES
    public_ips: tuple[str, ...]
    private_ips: tuple[str, ...]
    # As the cloud stores them (normalised where it needs: see api's docstring).
    tags: Mapping[str, str] = field(default_factory=dict)
    price: float | None = None  # per hour, where libcloud knows it for the size
    spot: bool = False

    def address(self, which: str = "public") -> str:
        """The address to connect to: ``public`` (the private one where the VM has no
        public one) or ``private``; "" while the VM has none."""
        if which == "public" and self.public_ips:
            return self.public_ips[0]
        return self.private_ips[0] if self.private_ips else ""


def absent_if_404(call: Callable[[], Any]) -> Any:
    """``call()``, or None where the cloud answers 404 (the thing is gone)."""
    BaseHTTPError = lib("libcloud.common.exceptions").BaseHTTPError
    ProviderError = lib("libcloud.common.types").ProviderError
    try:
        return call()
    except BaseHTTPError as e:
        if e.code == 404:
            return None
        raise
    except ProviderError as e:
        if e.http_code == 404:
            return None
        raise


def list_price(table: str, size: str, region: str | None) -> float | None:
    """The hourly list price libcloud's pricing data holds for a size (None: not known).

    A 0 there means libcloud has no figure, not a free machine.
    """
    from libcloud.pricing import get_size_price

    try:
        price = get_size_price(
            driver_type="compute", driver_name=table, size_id=size, region=region
        )
    except (KeyError, TypeError, ValueError, OSError):
        return None
    return float(price) if price else None


def has_tags(node_tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """Whether a node carries every one of ``wanted`` (both already in the cloud's form)."""
    return all(node_tags.get(k) == v for k, v in wanted.items())


def endpoint_parts(endpoint: str) -> dict[str, Any]:
    """``host``, ``port``, ``secure`` (and ``path``) of an endpoint URL, for a libcloud driver."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            f"endpoint {endpoint!r} is not an http(s) URL: set the pool's 'endpoint' "
            "to e.g. https://compute.example.org:8774"
        )
    secure = parts.scheme == "https"
    try:
        port = parts.port or (443 if secure else 80)
    except ValueError as e:
        raise BadInput(f"endpoint {endpoint!r} has a bad port: fix the pool's 'endpoint'") from e
    return {"host": parts.hostname, "port": port, "secure": secure, "path": parts.path}


class Adapter:
    """One cloud's side of :class:`~shoal.launch.cloud.api.Cloud`.

    ``fields`` are the pool's provider fields with their defaults
    (:func:`~shoal.launch.cloud.kinds.with_defaults`), ``credentials`` what
    :func:`~shoal.launch.cloud.kinds.credentials_of` read.
    """

    kind = ""

    def __init__(
        self, fields: Mapping[str, Any], credentials: Mapping[str, str], environ: Mapping[str, str]
    ) -> None:
        self.fields = fields
        self.credentials = credentials
        self.environ = environ

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        raise NotImplementedError

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        raise NotImplementedError

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        raise NotImplementedError

    def destroy(self, ids: Sequence[str]) -> None:
        raise NotImplementedError

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """The tags as this cloud stores them (identity where it takes any string)."""
        return dict(tags)

    def no_spot(self) -> None:
        """Refuse ``spot`` on a cloud that has no such VMs."""
        if self.fields.get("spot"):
            raise BadInput(
                f"{self.kind} has no spot or preemptible VMs: remove 'spot' from the pool"
            )

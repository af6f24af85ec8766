"""Four verbs over one cloud's libcloud driver: create, find, nodes, destroy.

::

    cloud = Cloud("aws", pool.fields)              # credentials from the environment
    node = cloud.create("cpu-3", {"shoal-boss": boss, "shoal-pool": "cpu"},
                        user_data, public_key)     # one creating call, tags already on it
    cloud.find({"shoal-boss": boss})               # every VM still carrying these tags
    cloud.nodes([node.id])                         # by id; one the cloud forgot is absent
    cloud.destroy([node.id])                       # terminate; one already gone is no error

Every error comes out as a :class:`~shoal.launch.cloud.errors.CloudError`
(or a :class:`~shoal.exceptions.BadInput` for a pool that cannot work),
one line naming the cloud and the API's own message; libcloud is imported
only when a :class:`Cloud` is made.

Tags are stored the way each cloud can: EC2, Azure and OpenStack take them
as they are; GCE labels are lower-cased, every character outside
``[a-z0-9_-]`` made ``-``, cut at 63; DigitalOcean tags are ``key:value``
strings with every character outside ``[A-Za-z0-9_:-]`` made ``-``;
OpenNebula keeps them as JSON in the VM's context (``SHOAL_TAGS``).
:meth:`Cloud.find` normalises what it is given the same way, and
:attr:`NodeInfo.tags` holds them as stored.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from shoal.exceptions import BadInput, ShoalError
from shoal.launch.cloud.base import STATES, Adapter, NodeInfo
from shoal.launch.cloud.errors import (
    CloudAuthFailed,
    CloudError,
    CloudRefused,
    CloudUnreachable,
    one_line,
    scrub,
)
from shoal.launch.cloud.kinds import KINDS, credentials_of, with_defaults

__all__ = [
    "STATES",
    "Cloud",
    "CloudAuthFailed",
    "CloudError",
    "CloudRefused",
    "CloudUnreachable",
    "NodeInfo",
]

_ADAPTERS = {
    "aws": "shoal.launch.cloud.aws:AwsAdapter",
    "gce": "shoal.launch.cloud.gce:GceAdapter",
    "azure": "shoal.launch.cloud.azure:AzureAdapter",
    "digitalocean": "shoal.launch.cloud.digitalocean:DigitalOceanAdapter",
    "openstack": "shoal.launch.cloud.openstack:OpenStackAdapter",
    "opennebula": "shoal.launch.cloud.opennebula:OpenNebulaAdapter",
}
# While connecting, a refusal (a token endpoint's 400 "invalid_grant" included)
# is the credentials'.
_CONNECT = "connect"
# Which credentials are secret: scrubbed from any message that would carry them.
_SECRET_NAMES = ("secret", "token", "password", "application_credential_secret")
# Where each cloud's credentials come from, for the line that says they were refused.
_READS = {
    "aws": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials",
    "gce": "the service account key GOOGLE_APPLICATION_CREDENTIALS names",
    "azure": "AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_SUBSCRIPTION_ID",
    "digitalocean": "DIGITALOCEAN_ACCESS_TOKEN",
    "openstack": "OS_* variables or OS_CLOUD's clouds.yaml entry",
    "opennebula": "ONE_USER/ONE_PASSWORD or ~/.one/one_auth",
}


class Cloud:
    """One cloud account and place (a pool's provider fields), through libcloud."""

    def __init__(
        self, kind: str, fields: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> None:
        if kind not in KINDS:
            raise BadInput(f"no cloud called {kind!r} (known: {', '.join(KINDS)})")
        if importlib.util.find_spec("libcloud") is None:
            raise BadInput(
                f"a {kind} pool needs Apache libcloud: pip install 'shoal[cloud]' "
                "(or apache-libcloud)"
            )
        env = os.environ if environ is None else environ
        self.kind = kind
        self.fields = with_defaults(kind, fields)
        credentials = credentials_of(kind, self.fields, env)
        self._secrets = [v for k, v in credentials.items() if k in _SECRET_NAMES]
        module, _, name = _ADAPTERS[kind].partition(":")
        with self._translating(_CONNECT):
            adapter = getattr(importlib.import_module(module), name)
            self._adapter: Adapter = adapter(self.fields, credentials, env)

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        """Create one VM called ``name`` with these tags on it from the start.

        One creating API call (lookups of the image or size may come before
        it): the public key and the user-data go the cloud's way, the spot
        flag where asked, terminate-on-shutdown where the cloud has it.
        """
        with self._translating("create a VM"):
            return self._adapter.create(name, tags, user_data, public_key)

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        """Every VM carrying all these tags, in any state but terminated."""
        with self._translating("list VMs"):
            return [n for n in self._adapter.find(tags) if n.state != "terminated"]

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        """The VMs with these ids, by id; one the cloud no longer knows is absent."""
        if not ids:
            return {}
        with self._translating("describe VMs"):
            return self._adapter.nodes(list(dict.fromkeys(ids)))

    def destroy(self, ids: Sequence[str]) -> None:
        """Terminate these VMs; one already gone is no error."""
        if not ids:
            return
        with self._translating("terminate VMs"):
            self._adapter.destroy(list(dict.fromkeys(ids)))

    def stored_tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        """These tags as this cloud stores them (what :attr:`NodeInfo.tags` holds)."""
        return self._adapter.tags(tags)

    @contextlib.contextmanager
    def _translating(self, doing: str) -> Iterator[None]:
        try:
            yield
        except ShoalError:
            raise
        except Exception as e:
            raise _translated(self.kind, doing, e, self._secrets) from None


_QUERY = re.compile(r"(/[^\s?]*)\?[^\s)'\"]*")


def _text(value: object) -> str:
    """A message libcloud kept as the API's error object (GCE: a dict) as text."""
    if isinstance(value, dict):
        inner = value.get("error")
        if isinstance(inner, dict):
            return _text(inner)
        if value.get("message"):
            return str(value["message"])
    return str(value)


def _status_and_message(e: Exception) -> tuple[int | None, str]:
    """The HTTP status (if any) and the API's own message in one of libcloud's errors."""
    from libcloud.common.exceptions import BaseHTTPError
    from libcloud.common.types import (
        InvalidCredsError,
        LibcloudError,
        MalformedResponseError,
        ProviderError,
    )

    if isinstance(e, InvalidCredsError):
        return 401, _text(e.value)
    if isinstance(e, ProviderError):
        return e.http_code, _text(e.value)
    if isinstance(e, BaseHTTPError):
        return e.code, str(e.message)
    if isinstance(e, MalformedResponseError):
        return None, f"its answer does not parse ({e.value})"
    if isinstance(e, LibcloudError):
        return None, _text(e.value)
    return None, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _unreachable(e: Exception) -> bool:
    import requests

    return isinstance(e, (requests.exceptions.RequestException, OSError))


def _translated(kind: str, doing: str, e: Exception, secrets: Sequence[str]) -> CloudError:
    """One of libcloud's (or the network's) errors as one line naming the cloud."""
    status, message = _status_and_message(e)
    # A URL's query (EC2's requests carry the user-data there) says nothing a user needs.
    message = one_line(scrub(_QUERY.sub(r"\1", message), secrets))
    if not message:
        message = f"HTTP {status} with no message" if status else type(e).__name__
    # A quota reached is the request refused (403 at GCE), not the credentials.
    quota = "quota" in type(e).__name__.lower() or "quota" in message.lower()
    refused = (400, 401, 403) if doing == _CONNECT else (401, 403)
    if status in refused and not quota:
        return CloudAuthFailed(
            f"{kind} refused the credentials trying to {doing}: {message} "
            f"(they are read from {_READS[kind]})",
            kind=kind,
            status=status,
        )
    if status == 429 or (status is not None and status >= 500):
        return CloudUnreachable(
            f"{kind} API failed to {doing}: {message} (try again later)", kind=kind, status=status
        )
    if _unreachable(e):
        return CloudUnreachable(
            f"{kind} API could not be reached to {doing}: {message} (check the network, "
            "or the pool's 'endpoint')",
            kind=kind,
        )
    if status is not None and 400 <= status < 500:
        return CloudRefused(
            f"{kind} refused to {doing}: {message} (check the pool's fields)",
            kind=kind,
            status=status,
        )
    if isinstance(e, (ValueError, AttributeError, TypeError)):
        return CloudRefused(f"{kind} could not {doing}: {message}", kind=kind)
    return CloudError(f"{kind} could not {doing}: {message}", kind=kind, status=status)

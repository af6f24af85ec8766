"""OpenStack servers through libcloud's OpenStack (compute v2) driver.

* ``create`` is one ``POST /servers`` (after a read-only ``GET
  /flavors/detail`` that turns a flavor name into its id; libcloud reads the
  new server back once): the tags as the server's metadata, the user-data
  (cloud-init runs it), ``networks`` and ``security_groups`` as given,
  ``key_name`` where set. The public key travels in the user-data, so no key
  pair is made and none left behind.
* OpenStack has no spot servers and no terminate-on-shutdown: a server the
  watchdog powers off is ``SHUTOFF`` (on most clouds still counted, often
  still billed) until the keeper or ``shoal down`` deletes it.
* ``image`` is the image's id (``openstack image list``); ``size`` a flavor
  name or id. ``address: public`` is the address libcloud classes public
  (a floating or routable one): shoal attaches no floating IP.
* ``find`` lists the servers and keeps those whose metadata has every tag.
* libcloud knows no OpenStack prices: the price is None.

Credentials: ``OS_AUTH_URL``, ``OS_USERNAME``, ``OS_PASSWORD``,
``OS_PROJECT_NAME`` (``OS_USER_DOMAIN_NAME``, ``OS_PROJECT_DOMAIN_ID``), or
an application credential (``OS_APPLICATION_CREDENTIAL_ID``/``_SECRET``), or
``OS_CLOUD``'s entry of ``clouds.yaml``; keystone v3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from shoal.exceptions import BadInput
from shoal.launch.cloud.base import Adapter, NodeInfo, absent_if_404, driver_class, lib, state_of

__all__ = ["OpenStackAdapter", "auth_base"]

# libcloud adds /v3/auth/tokens to the identity URL itself.
_VERSION_SUFFIX = re.compile(r"/v(2\.0|3)/?$")


def auth_base(auth_url: str) -> str:
    """The identity URL as libcloud wants it: without its ``/v3`` (or ``/v2.0``)."""
    return _VERSION_SUFFIX.sub("", auth_url.rstrip("/"))


class OpenStackAdapter(Adapter):
    kind = "openstack"

    def __init__(
        self, fields: Mapping[str, Any], credentials: Mapping[str, str], environ: Mapping[str, str]
    ) -> None:
        super().__init__(fields, credentials, environ)
        self.no_spot()
        c = credentials
        options: dict[str, Any] = {
            "api_version": "2.0",
            "ex_force_auth_url": auth_base(c["auth_url"]),
        }
        if c.get("region"):
            options["ex_force_service_region"] = c["region"]
        if fields.get("endpoint"):
            options["ex_force_base_url"] = str(fields["endpoint"])
        if c.get("application_credential_id"):
            key, secret = c["application_credential_id"], c["application_credential_secret"]
            options["ex_force_auth_version"] = "3.x_appcred"
        else:
            key, secret = c["username"], c["password"]
            options.update(
                ex_force_auth_version="3.x_password",
                ex_tenant_name=c["project_name"],
                ex_domain_name=c.get("user_domain_name") or "Default",
                ex_tenant_domain_id=c.get("project_domain_id") or "default",
            )
        self.driver: Any = driver_class("OPENSTACK")(key, secret, **options)

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        compute, openstack = lib("libcloud.compute.base"), lib("libcloud.compute.drivers.openstack")
        f, d = self.fields, self.driver
        networks = [
            openstack.OpenStackNetwork(str(n), None, None, d) for n in f.get("networks") or []
        ]
        groups = [
            openstack.OpenStackSecurityGroup(None, None, str(g), "", d)
            for g in f.get("security_groups") or []
        ]
        node = d.create_node(
            name=name,
            size=self._flavor(str(f["size"])),
            image=compute.NodeImage(str(f["image"]), None, d),
            ex_keyname=f.get("key_name") or None,
            ex_userdata=user_data,
            ex_metadata=dict(tags),
            networks=networks,
            ex_security_groups=groups,
            ex_availability_zone=f.get("zone") or None,
        )
        return self._info(node)

    def _flavor(self, size: str) -> Any:
        flavors = self.driver.list_sizes()
        for flavor in flavors:
            if size in (str(flavor.id), str(flavor.name)):
                return flavor
        known = ", ".join(sorted(str(f.name) for f in flavors)[:20])
        raise BadInput(f"openstack has no flavor {size!r} (it has: {known}): fix the pool's 'size'")

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        found = []
        for node in self.driver.list_nodes():
            metadata = node.extra.get("metadata") or {}
            if all(metadata.get(k) == v for k, v in tags.items()):
                found.append(self._info(node))
        return found

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        found = {}
        for node_id in ids:
            node = self.driver.ex_get_node_details(node_id)  # None where it is gone
            if node is not None:
                found[node_id] = self._info(node)
        return found

    def destroy(self, ids: Sequence[str]) -> None:
        for node_id in ids:
            request = self.driver.connection.request
            absent_if_404(partial(request, f"/servers/{node_id}", method="DELETE"))

    def _info(self, node: Any) -> NodeInfo:
        metadata = node.extra.get("metadata") or {}
        return NodeInfo(
            id=str(node.id),
            name=str(node.name),
            state=state_of(node.state),
            public_ips=tuple(node.public_ips or ()),
            private_ips=tuple(node.private_ips or ()),
            tags={str(k): str(v) for k, v in metadata.items()},
        )

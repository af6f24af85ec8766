"""OpenNebula VMs through libcloud's OpenNebula (OCCI) driver.

libcloud's driver speaks OpenNebula's OCCI server (``/compute``,
``/storage``, ``/network``), which OpenNebula shipped up to its 4.x
releases; newer OpenNebula only speaks XML-RPC, for which libcloud has no
driver. ``endpoint`` is the OCCI server's URL, ``api_version`` its version.

* ``create`` is one ``POST /compute``, written here over the driver's
  connection (libcloud's ``create_node`` sends the VM's name empty, and
  reads the answer with a lookup of every instance type): OCCI has no tags, so they travel as
  JSON in the VM's context (``SHOAL_TAGS``), with the user-data as
  ``START_SCRIPT_BASE64`` (the one-context packages run it as root at boot),
  the public key as ``SSH_PUBLIC_KEY`` (for ``USERNAME``: the pool's user)
  and ``NETWORK=YES``; ``networks`` are the virtual networks' ids.
* OpenNebula has no spot VMs and no terminate-on-shutdown: a VM the watchdog
  powers off is ``POWEROFF`` (still holding its host's resources) until the
  keeper or ``shoal down`` deletes it.
* ``find`` and ``nodes`` read each VM's description themselves (libcloud's
  reading counts a ``STOPPED`` VM as terminated, and ``find`` must not miss
  one); an address in a private range is a private address, any other public.
* libcloud knows no OpenNebula prices: the price is None.

Credentials: ``ONE_USER`` and ``ONE_PASSWORD``, or the ``user:password``
line of ``ONE_AUTH``'s file (``~/.one/one_auth``).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from xml.etree import ElementTree

from shoal.launch.cloud.base import (
    Adapter,
    NodeInfo,
    absent_if_404,
    driver_class,
    endpoint_parts,
)

__all__ = ["OpenNebulaAdapter"]

TAGS_KEY = "SHOAL_TAGS"
_STATES = {
    "INIT": "pending",
    "PENDING": "pending",
    "HOLD": "pending",
    "PROLOG": "pending",
    "BOOT": "pending",
    "ACTIVE": "running",
    "RUNNING": "running",
    "SHUTDOWN": "stopping",
    "EPILOG": "stopping",
    "SAVE": "stopping",
    "STOPPED": "stopped",
    "SUSPENDED": "stopped",
    "POWEROFF": "stopped",
    "UNDEPLOYED": "stopped",
    "DONE": "terminated",
}


# The ranges of addresses no one routes to from outside (RFC 1918, 6598, 4193, links).
_PRIVATE = [
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    )
]


def _split(ips: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(public, private) addresses: a private range makes an address private."""
    public: list[str] = []
    private: list[str] = []
    for ip in ips:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            continue
        is_private = any(address.version == n.version and address in n for n in _PRIVATE)
        (private if is_private else public).append(ip)
    return tuple(public), tuple(private)


def _tags(text: str | None) -> dict[str, str]:
    try:
        tags = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}


class OpenNebulaAdapter(Adapter):
    kind = "opennebula"

    def __init__(
        self, fields: Mapping[str, Any], credentials: Mapping[str, str], environ: Mapping[str, str]
    ) -> None:
        super().__init__(fields, credentials, environ)
        self.no_spot()
        where = endpoint_parts(str(fields["endpoint"]))
        self.driver: Any = driver_class("OPENNEBULA")(
            credentials["user"],
            credentials["password"],
            api_version=str(fields.get("api_version") or "3.8"),
            host=where["host"],
            port=where["port"],
            secure=where["secure"],
        )

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        f = self.fields
        context = {
            TAGS_KEY: json.dumps(dict(tags), sort_keys=True),
            "START_SCRIPT_BASE64": base64.b64encode(user_data.encode()).decode("ascii"),
            "SSH_PUBLIC_KEY": public_key.strip(),
            "NETWORK": "YES",
        }
        if f.get("user") and f["user"] != "root":
            context["USERNAME"] = str(f["user"])
        vm = ElementTree.Element("COMPUTE")
        ElementTree.SubElement(vm, "NAME").text = name
        ElementTree.SubElement(vm, "INSTANCE_TYPE").text = str(f["size"])
        disk = ElementTree.SubElement(vm, "DISK")
        ElementTree.SubElement(disk, "STORAGE", {"href": f"/storage/{f['image']}"})
        for network in f.get("networks") or []:
            nic = ElementTree.SubElement(vm, "NIC")
            ElementTree.SubElement(nic, "NETWORK", {"href": f"/network/{network}"})
        values = ElementTree.SubElement(vm, "CONTEXT")
        for key, value in context.items():
            ElementTree.SubElement(values, key).text = value
        answer = self.driver.connection.request(
            "/compute", method="POST", data=ElementTree.tostring(vm)
        )
        return self._read(answer.object)

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        collection = self.driver.connection.request("/compute").object
        ids = [c.attrib.get("href", "").rpartition("/compute/")[2] for c in collection]
        found = self.nodes([i for i in ids if i])
        return [n for n in found.values() if all(n.tags.get(k) == v for k, v in tags.items())]

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        found = {}
        for node_id in ids:
            answer = absent_if_404(partial(self.driver.connection.request, f"/compute/{node_id}"))
            if answer is not None:
                found[node_id] = self._read(answer.object)
        return found

    def destroy(self, ids: Sequence[str]) -> None:
        for node_id in ids:
            request = self.driver.connection.request
            absent_if_404(partial(request, f"/compute/{node_id}", method="DELETE"))

    @staticmethod
    def _read(vm: Any) -> NodeInfo:
        """A VM from its OCCI description (``<COMPUTE>``)."""
        public, private = _split([str(nic.findtext("IP")) for nic in vm.findall("NIC")])
        context = vm.find("CONTEXT")
        return NodeInfo(
            id=str(vm.findtext("ID")),
            name=str(vm.findtext("NAME") or ""),
            state=_STATES.get(str(vm.findtext("STATE") or "").upper(), "unknown"),
            public_ips=public,
            private_ips=private,
            tags=_tags(context.findtext(TAGS_KEY) if context is not None else None),
        )

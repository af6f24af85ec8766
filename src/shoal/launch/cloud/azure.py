"""Azure virtual machines through libcloud's Azure Resource Manager driver.

* ``create`` is one ``PUT`` of the VM, written here over the driver's
  connection rather than through libcloud's ``create_node``, which first
  makes an untagged network interface of its own (a second creating call,
  left behind when the VM is deleted) and cannot pass the custom data on
  Python 3. The VM's ``networkInterfaceConfigurations`` make its network
  interface (and, unless ``address: private``, a Standard public address)
  with it, and every part of it (interface, address, OS disk) carries
  ``deleteOption: Delete``, so deleting the VM leaves nothing behind. The tags
  are the VM's tags, the public key its ``adminUsername``'s ssh key, the
  user-data its ``customData`` (cloud-init runs it), ``spot`` its
  ``priority: Spot`` with ``evictionPolicy: Delete``.
* Azure has no terminate-on-shutdown: a VM the watchdog powers off is
  stopped but still allocated, and billed, until the keeper or
  ``shoal down`` deletes it.
* ``image`` is ``publisher:offer:sku:version`` (``Debian:debian-12:12:latest``)
  or an image's resource id (``/subscriptions/…``).
* A VM's id is its resource id; ``find`` lists the resource group's VMs and
  keeps those with every tag; ``destroy`` is one ``DELETE`` per VM, not
  waited for.
* The price is libcloud's Linux list price for the size in the location (for
  a spot VM: the most it may cost, ``maxPrice`` being -1).

Credentials: a service principal, ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``,
``AZURE_CLIENT_SECRET``, ``AZURE_SUBSCRIPTION_ID``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shoal.exceptions import BadInput
from shoal.launch.cloud.base import (
    Adapter,
    NodeInfo,
    absent_if_404,
    driver_class,
    endpoint_parts,
    has_tags,
    lib,
    list_price,
    state_of,
)

__all__ = ["AzureAdapter", "image_reference"]

# What the VM's network interface configurations need of the network API.
NETWORK_API_VERSION = "2020-11-01"
_PROVISIONING = {"creating": "pending", "updating": "pending", "deleting": "stopping"}


def image_reference(image: str) -> dict[str, str]:
    """The ``imageReference`` of a ``publisher:offer:sku:version`` or a resource id."""
    if image.startswith("/"):
        return {"id": image}
    parts = image.split(":")
    if len(parts) != 4 or not all(parts):
        raise BadInput(
            f"azure: image {image!r} is neither publisher:offer:sku:version "
            "nor an image resource id: fix the pool's 'image'"
        )
    return dict(zip(("publisher", "offer", "sku", "version"), parts, strict=True))


class AzureAdapter(Adapter):
    kind = "azure"

    def __init__(
        self, fields: Mapping[str, Any], credentials: Mapping[str, str], environ: Mapping[str, str]
    ) -> None:
        super().__init__(fields, credentials, environ)
        self.subscription = credentials["subscription"]
        self.group = str(fields["resource_group"])
        self.location = str(fields["location"]).lower().replace(" ", "")
        options: dict[str, Any] = {"region": self.location}
        if fields.get("endpoint"):
            where = endpoint_parts(str(fields["endpoint"]))
            environment = dict(lib("libcloud.common.azure_arm").publicEnvironments["default"])
            environment["resourceManagerEndpointUrl"] = str(fields["endpoint"])
            options.update(cloud_environment=environment, port=where["port"])
            options.update(secure=where["secure"])
        self.driver: Any = driver_class("AZURE_ARM")(
            credentials["tenant"],
            self.subscription,
            credentials["client"],
            credentials["secret"],
            **options,
        )
        # The token now: a refused service principal is told as such, here.
        self.driver.connection.connect()
        self.api_version = lib("libcloud.compute.drivers.azure_arm").VM_API_VERSION

    def _group_path(self, group: str | None = None) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{group or self.group}/providers"

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        f = self.fields
        user = str(f["user"])
        body: dict[str, Any] = {
            "location": self.location,
            "tags": dict(tags),
            "properties": {
                "hardwareProfile": {"vmSize": str(f["size"])},
                "storageProfile": {
                    "imageReference": image_reference(str(f["image"])),
                    "osDisk": {
                        "createOption": "FromImage",
                        "deleteOption": "Delete",
                        "managedDisk": {"storageAccountType": "Standard_LRS"},
                    },
                },
                "osProfile": {
                    "computerName": name[:64],
                    "adminUsername": user,
                    "customData": base64.b64encode(user_data.encode()).decode("ascii"),
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": True,
                        "ssh": {
                            "publicKeys": [
                                {
                                    "path": f"/home/{user}/.ssh/authorized_keys",
                                    "keyData": public_key.strip(),
                                }
                            ]
                        },
                    },
                },
                "networkProfile": {
                    "networkApiVersion": NETWORK_API_VERSION,
                    "networkInterfaceConfigurations": [self._interface(name)],
                },
            },
        }
        if f.get("spot"):
            body["properties"].update(
                priority="Spot", evictionPolicy="Delete", billingProfile={"maxPrice": -1}
            )
        target = f"{self._group_path()}/Microsoft.Compute/virtualMachines/{name}"
        answer = self.driver.connection.request(
            target, params={"api-version": self.api_version}, data=body, method="PUT"
        )
        vm = answer.object
        properties = vm.get("properties") or {}
        return NodeInfo(
            id=str(vm.get("id") or target),
            name=str(vm.get("name") or name),
            state=_PROVISIONING.get(str(properties.get("provisioningState")).lower(), "pending"),
            public_ips=(),
            private_ips=(),
            tags={str(k): str(v) for k, v in (vm.get("tags") or {}).items()},
            price=self._price(str(f["size"])),
            spot=properties.get("priority") == "Spot",
        )

    def _interface(self, name: str) -> dict[str, Any]:
        """The VM's network interface, made and deleted with it."""
        f = self.fields
        network = f"{self._group_path(f.get('network_resource_group'))}/Microsoft.Network"
        subnet = f"{network}/virtualNetworks/{f['network']}/subnets/{f.get('subnet') or 'default'}"
        address: dict[str, Any] = {
            "name": f"{name}-ip",
            "properties": {"primary": True, "subnet": {"id": subnet}},
        }
        if f.get("address") != "private":
            address["properties"]["publicIPAddressConfiguration"] = {
                "name": f"{name}-public-ip",
                "sku": {"name": "Standard"},
                "properties": {"deleteOption": "Delete", "publicIPAllocationMethod": "Static"},
            }
        interface: dict[str, Any] = {
            "name": f"{name}-nic",
            "properties": {
                "primary": True,
                "deleteOption": "Delete",
                "ipConfigurations": [address],
            },
        }
        if f.get("security_group"):
            groups = f"{self._group_path()}/Microsoft.Network/networkSecurityGroups"
            interface["properties"]["networkSecurityGroup"] = {
                "id": f"{groups}/{f['security_group']}"
            }
        return interface

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        action: str | None = f"{self._group_path()}/Microsoft.Compute/virtualMachines"
        params: dict[str, str] = {"api-version": self.api_version}
        ours = []
        while action:
            page = self.driver.connection.request(action, params=params).object
            ours += [
                vm["id"] for vm in page.get("value", []) if has_tags(vm.get("tags") or {}, tags)
            ]
            action = None
            if page.get("nextLink"):
                following = urlsplit(page["nextLink"])
                action = following.path
                params = {k: v[0] for k, v in parse_qs(following.query).items()}
        return list(self.nodes(ours).values())

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        found = {}
        for vm_id in ids:
            node = absent_if_404(partial(self.driver.ex_get_node, vm_id))
            if node is not None:
                found[vm_id] = self._info(node)
        return found

    def destroy(self, ids: Sequence[str]) -> None:
        BaseHTTPError = lib("libcloud.common.exceptions").BaseHTTPError
        for vm_id in ids:
            try:
                self.driver.connection.request(
                    vm_id, params={"api-version": self.api_version}, method="DELETE"
                )
            except BaseHTTPError as e:
                # 202: accepted, on its way; 204 or 404: gone already.
                if e.code not in (202, 204, 404):
                    raise

    def _price(self, size: str) -> float | None:
        return list_price("azure_linux", size.lower().replace("_", ""), self.location)

    def _info(self, node: Any) -> NodeInfo:
        vm = node.extra or {}
        properties = vm.get("properties") or {}
        size = str((properties.get("hardwareProfile") or {}).get("vmSize") or self.fields["size"])
        return NodeInfo(
            id=str(node.id),
            name=str(node.name),
            state=state_of(node.state),
            public_ips=tuple(node.public_ips or ()),
            private_ips=tuple(node.private_ips or ()),
            tags={str(k): str(v) for k, v in (vm.get("tags") or {}).items()},
            price=self._price(size),
            spot=properties.get("priority") == "Spot",
        )

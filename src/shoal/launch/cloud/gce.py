"""Google Compute Engine through libcloud's GCE driver.

* ``create`` is one ``instances.insert`` (after read-only lookups of the
  zone, machine type, network, disk type and image, which libcloud makes;
  it then waits for the insert's operation to finish): the tags as labels,
  the public key as ``ssh-keys`` metadata (``USER:KEY``: the guest agent
  makes the user and authorises the key), the user-data as the
  ``startup-script`` metadata (run as root at every boot), ``preemptible``
  scheduling where ``spot`` is set, an ephemeral public address unless
  ``address: private``. GCE has no terminate-on-shutdown: a VM the watchdog
  powers off is ``TERMINATED`` (stopped, its disk still billed) until the
  keeper or ``shoal down`` deletes it.
* Labels are lower case, of ``[a-z0-9_-]``, at most 63 characters: each tag
  is stored lower-cased, any other character made ``-`` (a key not starting
  with a letter gets ``k-`` before it).
* A VM's id is its name (what GCE's API addresses it by, in the pool's zone).
* ``image`` is ``PROJECT/FAMILY`` (``debian-cloud/debian-12``: the family's
  newest image), a family or an image name of the pool's project, or a
  ``projects/…/global/images/…`` path or URL.
* The price is libcloud's on-demand figure for the machine type in the zone's
  region (for a preemptible VM: more than it costs).

Credentials: the service account key file ``GOOGLE_APPLICATION_CREDENTIALS``
names; libcloud caches its access token in ``~/.google_libcloud_auth.PROJECT``
(mode 0600).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from shoal.launch.cloud.base import (
    Adapter,
    NodeInfo,
    absent_if_404,
    driver_class,
    endpoint_parts,
    lib,
)
from shoal.launch.cloud.kinds import expand_path

__all__ = ["GceAdapter", "label"]

_STATES = {
    "PROVISIONING": "pending",
    "STAGING": "pending",
    "RUNNING": "running",
    "STOPPING": "stopping",
    "SUSPENDING": "stopping",
    "STOPPED": "stopped",
    "SUSPENDED": "stopped",
    "TERMINATED": "stopped",  # GCE's word for a stopped VM, not a deleted one
}
_NOT_IN_LABEL = re.compile(r"[^a-z0-9_-]")


def label(text: str, key: bool = False) -> str:
    """A tag's key or value as a GCE label takes it."""
    value = _NOT_IN_LABEL.sub("-", text.lower())
    if key and not value[:1].isalpha():
        value = "k-" + value
    return value[:63]


class GceAdapter(Adapter):
    kind = "gce"

    def __init__(
        self, fields: Mapping[str, Any], credentials: Mapping[str, str], environ: Mapping[str, str]
    ) -> None:
        super().__init__(fields, credentials, environ)
        self.zone = str(fields["zone"])
        self.project = credentials["project"]
        home = expand_path("~", environ)
        options: dict[str, Any] = {
            "project": self.project,
            "auth_type": "SA",
            "credential_file": str(home / f".google_libcloud_auth.{self.project}"),
        }
        if fields.get("endpoint"):
            where = endpoint_parts(str(fields["endpoint"]))
            options.update(host=where["host"], port=where["port"], secure=where["secure"])
        key = str(expand_path(credentials["path"], environ))
        self.driver: Any = driver_class("GCE")(credentials["email"], key, **options)
        self._prices: dict[str, float | None] = {}

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        return {label(k, key=True): label(v) for k, v in tags.items()}

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        f, d = self.fields, self.driver
        spot = bool(f.get("spot"))
        size = d.ex_get_size(str(f["size"]), self.zone)
        self._prices[size.name] = float(size.price) if size.price else None
        node = d.create_node(
            name,
            size,
            self._image(str(f["image"])),
            location=self.zone,
            ex_network=str(f.get("network") or "default"),
            ex_subnetwork=f.get("subnetwork") or None,
            ex_metadata={
                "startup-script": user_data,
                "ssh-keys": f"{f['user']}:{public_key.strip()}",
            },
            ex_labels=self.tags(tags),
            external_ip="ephemeral" if f.get("address") != "private" else None,
            ex_preemptible=True if spot else None,
            # A preemptible VM may be neither migrated nor restarted.
            ex_on_host_maintenance="TERMINATE" if spot else None,
            ex_automatic_restart=False if spot else None,
        )
        return self._info(node)

    def _image(self, image: str) -> Any:
        d = self.driver
        if image.startswith("projects/"):
            image = f"https://www.googleapis.com/compute/v1/{image}"
        if image.startswith("https://"):
            return d.ex_get_image(image)
        project, _, family = image.rpartition("/")
        if project:
            return d.ex_get_image_from_family(
                family, ex_project_list=[project], ex_standard_projects=False
            )
        try:
            return d.ex_get_image_from_family(image, ex_standard_projects=False)
        except lib("libcloud.common.google").ResourceNotFoundError:
            return d.ex_get_image(image)

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        wanted = self.tags(tags)
        found = []
        for node in self.driver.list_nodes(ex_zone=self.zone):
            labels = node.extra.get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                found.append(self._info(node))
        return found

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        found = {}
        for name in ids:
            node = absent_if_404(partial(self.driver.ex_get_node, name, self.zone))
            if node is not None:
                found[name] = self._info(node)
        return found

    def destroy(self, ids: Sequence[str]) -> None:
        # The delete's operation is not waited for: the VM is on its way out.
        for name in ids:
            request = self.driver.connection.request
            absent_if_404(partial(request, f"/zones/{self.zone}/instances/{name}", method="DELETE"))

    def _price(self, size: str) -> float | None:
        if size not in self._prices:
            found = absent_if_404(partial(self.driver.ex_get_size, size, self.zone))
            self._prices[size] = float(found.price) if found is not None and found.price else None
        return self._prices[size]

    def _info(self, node: Any) -> NodeInfo:
        extra = node.extra or {}
        size = str(extra.get("machineType") or "").rsplit("/", 1)[-1]
        return NodeInfo(
            id=str(node.name),
            name=str(node.name),
            state=_STATES.get(str(extra.get("status")), "unknown"),
            public_ips=tuple(ip for ip in node.public_ips or () if ip),
            private_ips=tuple(ip for ip in node.private_ips or () if ip),
            tags={str(k): str(v) for k, v in (extra.get("labels") or {}).items()},
            price=self._price(size) if size else None,
            spot=bool((extra.get("scheduling") or {}).get("preemptible")),
        )

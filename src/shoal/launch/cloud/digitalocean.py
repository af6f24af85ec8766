"""DigitalOcean droplets through libcloud's DigitalOcean (v2) driver.

* ``create`` is one ``POST /v2/droplets``: the tags as ``key:value`` strings
  (DigitalOcean's tags are plain names of ``[A-Za-z0-9_:-]``; any other
  character becomes ``-``), the user-data (cloud-init runs it), the keys of
  ``ssh_keys`` where given. The public key travels in the user-data: putting
  it in the account first would leave a key behind. Without ``ssh_keys``,
  DigitalOcean mails a root password for each droplet.
* DigitalOcean has no spot droplets and no terminate-on-shutdown: a droplet
  the watchdog powers off is ``off`` and still billed, until the keeper or
  ``shoal down`` destroys it.
* ``find`` lists the droplets and keeps those with every tag.
* The price is the size's ``price_hourly`` from the droplet's own description.

Credentials: ``DIGITALOCEAN_ACCESS_TOKEN``.
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
    state_of,
)

__all__ = ["DigitalOceanAdapter"]

_NOT_IN_TAG = re.compile(r"[^A-Za-z0-9_:-]")


def _tag(key: str, value: str) -> str:
    return _NOT_IN_TAG.sub("-", f"{key}:{value}")[:255]


class DigitalOceanAdapter(Adapter):
    kind = "digitalocean"

    def __init__(
        self, fields: Mapping[str, Any], credentials: Mapping[str, str], environ: Mapping[str, str]
    ) -> None:
        super().__init__(fields, credentials, environ)
        self.no_spot()
        driver = driver_class("DIGITAL_OCEAN")
        self.driver: Any = driver(credentials["token"], api_version="v2")
        if fields.get("endpoint"):
            # The v2 driver drops host and port given to it: set them on its connection.
            where = endpoint_parts(str(fields["endpoint"]))
            connection = self.driver.connection
            connection.host, connection.port = where["host"], where["port"]
            connection.secure = where["secure"]

    def tags(self, tags: Mapping[str, str]) -> dict[str, str]:
        return dict(_tag(k, v).split(":", 1) for k, v in tags.items())

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        compute = lib("libcloud.compute.base")
        f, d = self.fields, self.driver
        image = str(f["image"])
        attributes: dict[str, Any] = {"tags": [_tag(k, v) for k, v in tags.items()]}
        if f.get("ssh_keys"):
            attributes["ssh_keys"] = [int(k) if str(k).isdigit() else str(k) for k in f["ssh_keys"]]
        node = d.create_node(
            name=name,
            size=compute.NodeSize(str(f["size"]), str(f["size"]), 0, 0, 0, None, d),
            # An image is a slug ("debian-12-x64") or a number.
            image=compute.NodeImage(int(image) if image.isdigit() else image, None, d),
            location=compute.NodeLocation(str(f["region"]), str(f["region"]), None, d),
            ex_create_attr=attributes,
            ex_user_data=user_data,
        )
        return self._info(node)

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        wanted = {_tag(k, v) for k, v in tags.items()}
        return [
            self._info(n)
            for n in self.driver.list_nodes()
            if wanted <= set(n.extra.get("tags") or ())
        ]

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        found = {}
        for node_id in ids:
            node = absent_if_404(partial(self.driver.ex_get_node_details, node_id))
            if node is not None:
                found[node_id] = self._info(node)
        return found

    def destroy(self, ids: Sequence[str]) -> None:
        for node_id in ids:
            request = self.driver.connection.request
            absent_if_404(partial(request, f"/v2/droplets/{node_id}", method="DELETE"))

    def _info(self, node: Any) -> NodeInfo:
        tags = {}
        for tag in node.extra.get("tags") or ():
            key, _, value = str(tag).partition(":")
            tags[key] = value
        size = node.size
        return NodeInfo(
            id=str(node.id),
            name=str(node.name),
            state=state_of(node.state),
            public_ips=tuple(node.public_ips or ()),
            private_ips=tuple(node.private_ips or ()),
            tags=tags,
            price=float(size.price) if size is not None and size.price else None,
        )

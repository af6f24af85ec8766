"""Amazon EC2 through libcloud's EC2 driver.

* ``create`` is one ``RunInstances`` call: the tags (and ``Name``) in its
  ``TagSpecifications``, ``InstanceInitiatedShutdownBehavior=terminate`` (so
  the watchdog's power-off ends the bill), the spot market option where
  ``spot`` is set, the user-data. The public key travels in the user-data
  (the watchdog script authorises it), so no key pair is imported and none is
  left behind; ``key_name`` adds an existing key pair as well.
* ``find`` filters ``DescribeInstances`` by ``tag:KEY`` server-side; ``nodes``
  by the ``instance-id`` filter, which (unlike ``InstanceId.N``) leaves out an
  id EC2 no longer knows instead of refusing the whole call.
* ``destroy`` is one ``TerminateInstances`` call for the ids still alive.
* The price is libcloud's on-demand Linux list price for the size and region
  (for a spot instance: the most it may cost, the spot price being at most that).

Credentials: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``)
or a profile of ``~/.aws/credentials`` (:mod:`shoal.launch.cloud.kinds`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from shoal.exceptions import BadInput
from shoal.launch.cloud.base import (
    Adapter,
    NodeInfo,
    driver_class,
    endpoint_parts,
    lib,
    list_price,
)

__all__ = ["AwsAdapter"]

# EC2's instance states -> ours ("shutting-down" is on its way to terminated).
_STATES = {
    "pending": "pending",
    "running": "running",
    "shutting-down": "stopping",
    "stopping": "stopping",
    "stopped": "stopped",
    "terminated": "terminated",
}
_ALIVE = ["pending", "running", "shutting-down", "stopping", "stopped"]


class AwsAdapter(Adapter):
    kind = "aws"

    def __init__(
        self, fields: Mapping[str, Any], credentials: Mapping[str, str], environ: Mapping[str, str]
    ) -> None:
        super().__init__(fields, credentials, environ)
        self.region = str(fields["region"])
        options: dict[str, Any] = {"region": self.region, "signature_version": "4"}
        if credentials.get("token"):
            options["token"] = credentials["token"]
        if fields.get("endpoint"):
            where = endpoint_parts(str(fields["endpoint"]))
            options.update(host=where["host"], port=where["port"], secure=where["secure"])
        driver = driver_class("EC2")
        if self.region not in driver.list_regions():
            raise BadInput(
                f"aws: libcloud knows no region {self.region!r}: fix the pool's 'region'"
            )
        self.driver: Any = driver(credentials["key"], credentials["secret"], **options)

    def create(
        self, name: str, tags: Mapping[str, str], user_data: str, public_key: str
    ) -> NodeInfo:
        compute, ec2 = lib("libcloud.compute.base"), lib("libcloud.compute.drivers.ec2")
        f, d = self.fields, self.driver
        groups = [str(g) for g in f.get("security_groups") or []]
        group_ids = [g for g in groups if g.startswith("sg-")]
        group_names = [g for g in groups if not g.startswith("sg-")]
        subnet = f.get("subnet")
        if group_ids and not subnet:
            raise BadInput(
                "aws: security group ids (sg-…) need the pool's 'subnet' "
                "(or name the groups instead)"
            )
        node = d.create_node(
            name=name,
            size=compute.NodeSize(str(f["size"]), str(f["size"]), 0, 0, 0, None, d),
            image=compute.NodeImage(str(f["image"]), None, d),
            ex_keyname=f.get("key_name") or None,
            ex_userdata=user_data,
            ex_security_groups=group_names or None,
            ex_security_group_ids=group_ids or None,
            ex_metadata=dict(tags),
            ex_subnet=ec2.EC2NetworkSubnet(subnet, subnet, "available") if subnet else None,
            # A subnet of a VPC of one's own gives no public address unless asked.
            ex_assign_public_ip=bool(subnet) and f.get("address") == "public",
            ex_terminate_on_shutdown=True,
            ex_spot=bool(f.get("spot")),
        )
        return self._info(node)

    def find(self, tags: Mapping[str, str]) -> list[NodeInfo]:
        filters: dict[str, Any] = {f"tag:{k}": v for k, v in tags.items()}
        filters["instance-state-name"] = _ALIVE
        return [self._info(n) for n in self.driver.list_nodes(ex_filters=filters)]

    def nodes(self, ids: Sequence[str]) -> dict[str, NodeInfo]:
        found = self.driver.list_nodes(ex_filters={"instance-id": list(ids)})
        return {n.id: self._info(n) for n in found if n.id in ids}

    def destroy(self, ids: Sequence[str]) -> None:
        # TerminateInstances refuses the whole call for one id EC2 does not know.
        alive = [i for i, n in self.nodes(ids).items() if n.state != "terminated"]
        if not alive:
            return
        params = {"Action": "TerminateInstances"}
        params.update({f"InstanceId.{i + 1}": node_id for i, node_id in enumerate(alive)})
        self.driver.connection.request(self.driver.path, params=params)

    def _info(self, node: Any) -> NodeInfo:
        extra = node.extra or {}
        size = str(extra.get("instance_type") or self.fields["size"])
        tags = {str(k): str(v) for k, v in (extra.get("tags") or {}).items()}
        return NodeInfo(
            id=str(node.id),
            name=str(node.name or tags.get("Name", "")),
            state=_STATES.get(str(extra.get("status")), "unknown"),
            public_ips=tuple(node.public_ips or ()),
            private_ips=tuple(node.private_ips or ()),
            tags=tags,
            price=list_price("ec2_linux", size, self.region),
            spot=extra.get("instance_lifecycle") == "spot",
        )

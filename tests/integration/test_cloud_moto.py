"""The aws cloud layer against a real EC2 API: moto's server on a loopback port.

libcloud's EC2 driver reaches moto through the pool's ``endpoint``; boto3
looks at what moto then holds. moto's instances never boot and their
addresses belong to nobody: nothing here connects to any of them, only to
moto's HTTP API on 127.0.0.1.

Two differences between moto and EC2 are aligned here, not in shoal: moto's
XML namespace lacks the trailing ``/`` libcloud's ``ec2.NAMESPACE`` has, and
moto's error answers carry that namespace (and a ``<Type>``) where EC2's
carry neither.
"""

from __future__ import annotations

import base64
import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shoal.launch.cloud.api import Cloud, CloudAuthFailed, CloudRefused, CloudUnreachable

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHz8aW5zdGVhZG9mYXJlYWxrZXl0aGlzaXNhdGVzdA shoal@test"
SCRIPT = "#!/bin/sh\necho watchdog\n"
REGION = "eu-west-1"
ENV = {"AWS_ACCESS_KEY_ID": "AKIAMOTOTESTKEY00001", "AWS_SECRET_ACCESS_KEY": "moto-secret-key"}


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == "127.0.0.1"
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """moto's URL, with libcloud's EC2 driver reading moto's XML as EC2's."""
    from libcloud.compute.drivers import ec2
    from moto import settings as moto_settings

    monkeypatch.setattr(ec2, "NAMESPACE", ec2.NAMESPACE.rstrip("/"))
    original = ec2.EC2Response.parse_error

    def parse_error(response: Any) -> Any:
        body = re.sub(r' xmlns="[^"]+"', "", response.body, count=1)
        response.body = re.sub(r"<Type>[^<]*</Type>", "", body)
        return original(response)

    monkeypatch.setattr(ec2.EC2Response, "parse_error", parse_error)
    # EC2 refuses an image id it does not know; moto does so only when asked.
    monkeypatch.setattr(moto_settings, "ENABLE_AMI_VALIDATION", True)
    return moto_url


def _boto(url: str) -> Any:
    import boto3

    return boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id=ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=ENV["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def ec2(moto: str) -> Any:
    return _boto(moto)


@pytest.fixture
def image(ec2: Any) -> str:
    return str(ec2.describe_images()["Images"][0]["ImageId"])


def _fields(moto: str, image: str, **more: Any) -> dict[str, Any]:
    return {"region": REGION, "image": image, "size": "t3.micro", "endpoint": moto, **more}


def _instance(ec2: Any, instance_id: str) -> dict[str, Any]:
    (reservation,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    (instance,) = reservation["Instances"]
    return dict(instance)


def _boss() -> dict[str, str]:
    return {"shoal-boss": f"b-{uuid.uuid4().hex[:8]}", "shoal-pool": "cpu"}


def test_create_tags_the_instance_at_once_terminates_on_shutdown_and_asks_for_spot(
    moto: str, ec2: Any, image: str
) -> None:
    tags = _boss()
    cloud = Cloud("aws", _fields(moto, image, spot=True), ENV)
    node = cloud.create("cpu-1", tags, SCRIPT, KEY)

    instance = _instance(ec2, node.id)
    assert {t["Key"]: t["Value"] for t in instance["Tags"]} == {**tags, "Name": "cpu-1"}
    assert instance.get("InstanceLifecycle") == "spot"
    assert instance["InstanceType"] == "t3.micro" and instance["ImageId"] == image
    behaviour = ec2.describe_instance_attribute(
        InstanceId=node.id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    data = ec2.describe_instance_attribute(InstanceId=node.id, Attribute="userData")
    assert base64.b64decode(data["UserData"]["Value"]).decode() == SCRIPT
    # No key pair was imported for it: the key travels in the user-data.
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert node.spot and node.name == "cpu-1" and node.tags["shoal-boss"] == tags["shoal-boss"]
    assert node.price is not None and node.price > 0  # libcloud's list price for t3.micro


def test_find_by_tags_destroy_and_nodes_after(moto: str, ec2: Any, image: str) -> None:
    ours, theirs = _boss(), _boss()
    cloud = Cloud("aws", _fields(moto, image), ENV)
    first = cloud.create("cpu-1", ours, SCRIPT, KEY)
    second = cloud.create("cpu-2", ours, SCRIPT, KEY)
    other = cloud.create("cpu-1", theirs, SCRIPT, KEY)

    found = cloud.find({"shoal-boss": ours["shoal-boss"]})
    assert sorted(n.id for n in found) == sorted([first.id, second.id])
    assert cloud.find({**ours, "shoal-pool": "gpu"}) == []

    gone = "i-0123456789abcdef0"  # never was: no error
    cloud.destroy([first.id, gone])
    assert _instance(ec2, first.id)["State"]["Name"] == "terminated"
    assert [n.id for n in cloud.find({"shoal-boss": ours["shoal-boss"]})] == [second.id]

    described = cloud.nodes([first.id, second.id, gone])
    assert gone not in described
    assert described[first.id].state == "terminated"
    assert described[second.id].state in ("pending", "running")
    assert _instance(ec2, other.id)["State"]["Name"] == "running"
    cloud.destroy([second.id, other.id])


def test_a_subnet_places_the_instance_and_takes_group_ids(moto: str, ec2: Any, image: str) -> None:
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="ssh-in", Description="ssh", VpcId=vpc)["GroupId"]
    fields = _fields(moto, image, subnet=subnet, security_groups=[group], address="private")
    cloud = Cloud("aws", fields, ENV)
    node = cloud.create("cpu-1", _boss(), SCRIPT, KEY)

    instance = _instance(ec2, node.id)
    assert instance["SubnetId"] == subnet
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group]
    (address,) = node.private_ips
    assert address.startswith("10.77.1.")
    cloud.destroy([node.id])


def test_a_group_id_without_a_subnet_is_one_line_before_any_call(moto: str, image: str) -> None:
    cloud = Cloud("aws", _fields(moto, image, security_groups=["sg-0def5678"]), ENV)
    with pytest.raises(Exception, match=r"security group ids \(sg-…\) need the pool's 'subnet'"):
        cloud.create("cpu-1", _boss(), SCRIPT, KEY)


def test_a_bad_image_id_is_one_clear_line(moto: str, ec2: Any) -> None:
    cloud = Cloud("aws", _fields(moto, "ami-0badbadbadbadbad0"), ENV)
    before = len(ec2.describe_instances()["Reservations"])
    with pytest.raises(CloudRefused) as refused:
        cloud.create("cpu-1", _boss(), SCRIPT, KEY)
    line = str(refused.value)
    assert line.startswith("aws refused to create a VM: InvalidAMIID.NotFound")
    assert "ami-0badbadbadbadbad0" in line and "\n" not in line
    assert refused.value.exit_code == 2
    assert len(ec2.describe_instances()["Reservations"]) == before


def test_refused_credentials_are_one_line_without_the_secret(
    moto: str, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto import settings as moto_settings

    # moto checks credentials only when told to: every request, from now on.
    monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    cloud = Cloud("aws", _fields(moto, image), ENV)
    with pytest.raises(CloudAuthFailed) as refused:
        cloud.find(_boss())
    line = str(refused.value)
    assert line.startswith("aws refused the credentials trying to list VMs:")
    assert "AWS_ACCESS_KEY_ID" in line and ENV["AWS_SECRET_ACCESS_KEY"] not in line
    assert "\n" not in line


def test_an_endpoint_that_does_not_answer_is_one_line(image: str) -> None:
    with socket.socket() as probe:  # a loopback port with nothing behind it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cloud = Cloud("aws", {**_fields(f"http://127.0.0.1:{port}", image)}, ENV)
    with pytest.raises(CloudUnreachable) as unreachable:
        cloud.find(_boss())
    line = str(unreachable.value)
    assert line.startswith("aws API could not be reached to list VMs:")
    assert "Action=" not in line and "\n" not in line

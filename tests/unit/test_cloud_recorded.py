"""The cloud layer's per-cloud details against recorded API answers (no network at all).

No emulator of DigitalOcean, GCE, Azure, OpenStack or OpenNebula runs here, so
each is tested libcloud's own way: the driver's connection answers from files
under ``cloud_answers/<cloud>/``, shaped as each API documents its answers,
and the test asserts on the requests the driver sent (tags, public key,
user-data, spot flag) and on what :class:`Cloud` makes of the answers.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from shoal.launch.cloud.api import Cloud, CloudAuthFailed, CloudRefused
from tests.cloudhttp import Recorded, recorded

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHz8aW5zdGVhZG9mYXJlYWxrZXl0aGlzaXNhdGVzdA shoal@test"
SCRIPT = "#!/bin/sh\necho watchdog\n"
TAGS = {"shoal-boss": "b-7f3a", "shoal-pool": "cpu"}


def one_line(error: pytest.ExceptionInfo[Exception]) -> str:
    text = str(error.value)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- DigitalOcean -----------------------------------------------------------------------

DO_ENV = {"DIGITALOCEAN_ACCESS_TOKEN": "dop_v1_0123456789abcdef", "HOME": "/nonexistent"}
DO_FIELDS = {"image": "debian-12-x64", "size": "s-2vcpu-4gb", "region": "fra1"}


@pytest.fixture
def do_api(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    api = recorded(monkeypatch, "digitalocean")
    api.answer("GET", r"/v2/droplets/\d+", "not_found.json", status=404, regex=True)
    api.answer("DELETE", r"/v2/droplets/\d+", "not_found.json", status=404, regex=True)
    api.answer("POST", "/v2/droplets", "create.json", status=202)
    api.answer("GET", "/v2/droplets", "list.json")
    api.answer("GET", "/v2/droplets/402312874", "get.json")
    api.answer("DELETE", "/v2/droplets/402312874", status=204)
    return api


def test_digitalocean_create_sends_tags_user_data_and_token(do_api: Recorded) -> None:
    cloud = Cloud("digitalocean", DO_FIELDS, DO_ENV)
    node = cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    (sent,) = do_api.requests("POST", "/v2/droplets")
    body = sent.json()
    assert body["tags"] == ["shoal-boss:b-7f3a", "shoal-pool:cpu"]
    assert body["user_data"] == SCRIPT
    assert (body["name"], body["size"], body["image"], body["region"]) == (
        "cpu-1",
        "s-2vcpu-4gb",
        "debian-12-x64",
        "fra1",
    )
    # No key is registered in the account for it: it travels in the user-data.
    assert "ssh_keys" not in body and not do_api.requests("POST", "/v2/account/keys")
    assert sent.headers["authorization"] == "Bearer dop_v1_0123456789abcdef"
    assert (node.id, node.name, node.state, node.spot) == ("402312874", "cpu-1", "pending", False)
    assert node.tags == TAGS
    assert node.price == pytest.approx(0.03571)


def test_digitalocean_ssh_keys_of_the_account_are_passed(do_api: Recorded) -> None:
    cloud = Cloud("digitalocean", {**DO_FIELDS, "ssh_keys": ["512189", "3b:16:bf:e4"]}, DO_ENV)
    cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    (sent,) = do_api.requests("POST", "/v2/droplets")
    assert sent.json()["ssh_keys"] == [512189, "3b:16:bf:e4"]


def test_digitalocean_tags_are_normalised_to_its_tag_names(do_api: Recorded) -> None:
    cloud = Cloud("digitalocean", DO_FIELDS, DO_ENV)
    cloud.create("cpu-1", {"shoal-boss": "laptop.local/7", "shoal-pool": "cpu"}, SCRIPT, KEY)
    (sent,) = do_api.requests("POST", "/v2/droplets")
    assert sent.json()["tags"] == ["shoal-boss:laptop-local-7", "shoal-pool:cpu"]
    assert cloud.stored_tags({"shoal-boss": "laptop.local/7"}) == {"shoal-boss": "laptop-local-7"}


def test_digitalocean_find_nodes_and_destroy(do_api: Recorded) -> None:
    cloud = Cloud("digitalocean", DO_FIELDS, DO_ENV)
    found = cloud.find({"shoal-boss": "b-7f3a"})
    assert sorted((n.id, n.state) for n in found) == [
        ("402312874", "running"),
        ("402312990", "stopped"),
    ]
    running = next(n for n in found if n.id == "402312874")
    assert running.public_ips == ("164.90.170.23",) and running.private_ips == ("10.114.0.5",)
    assert [n.id for n in cloud.find({"shoal-boss": "b-7f3a", "shoal-pool": "gpu"})] == []

    assert list(cloud.nodes(["402312874", "402399999"])) == ["402312874"]

    cloud.destroy(["402312874", "402399999"])  # the second is gone already: no error
    assert [s.path for s in do_api.requests("DELETE", r".*")] == [
        "/v2/droplets/402312874",
        "/v2/droplets/402399999",
    ]


def test_digitalocean_refusals_are_one_line(do_api: Recorded) -> None:
    do_api.answer("GET", "/v2/droplets", "unauthorized.json", status=401)
    do_api.answer("POST", "/v2/droplets", "invalid_image.json", status=422)
    cloud = Cloud("digitalocean", DO_FIELDS, DO_ENV)
    with pytest.raises(CloudAuthFailed) as refused:
        cloud.find(TAGS)
    line = one_line(refused)
    assert line.startswith("digitalocean refused the credentials")
    assert "Unable to authenticate you" in line and "DIGITALOCEAN_ACCESS_TOKEN" in line
    assert DO_ENV["DIGITALOCEAN_ACCESS_TOKEN"] not in line
    with pytest.raises(CloudRefused) as bad:
        cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    assert "invalid image" in one_line(bad) and bad.value.exit_code == 2


def test_digitalocean_has_no_spot(do_api: Recorded) -> None:
    with pytest.raises(Exception, match="digitalocean has no spot"):
        Cloud("digitalocean", {**DO_FIELDS, "spot": True}, DO_ENV)


# --- GCE ----------------------------------------------------------------------------------

GCE_PATH = "/compute/v1/projects/shoal-test"
GCE_ZONE = "europe-west1-b"
GCE_FIELDS = {"zone": GCE_ZONE, "image": "debian-cloud/debian-12", "size": "e2-standard-2"}


@pytest.fixture
def gce_env(tmp_path: Path) -> dict[str, str]:
    """A service account key of its own (libcloud signs a token request with it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": "shoal-test",
        "client_email": "shoal@shoal-test.iam.gserviceaccount.com",
        "private_key": pem,
    }
    (tmp_path / "sa.json").write_text(json.dumps(account), encoding="utf-8")
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "sa.json"), "HOME": str(tmp_path)}


@pytest.fixture
def gce_api(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    api = recorded(monkeypatch, "gce")
    zone = f"{GCE_PATH}/zones/{GCE_ZONE}"
    api.answer("POST", "/o/oauth2/token", "token.json", host="accounts.google.com")
    api.answer("GET", f"{GCE_PATH}/zones", "zones.json")
    api.answer("GET", f"{zone}/machineTypes/e2-standard-2", "machine_type.json")
    api.answer("GET", f"{GCE_PATH}/global/networks/default", "network.json")
    api.answer("GET", f"{zone}/diskTypes/pd-standard", "disk_type.json")
    family = "/compute/v1/projects/debian-cloud/global/images/family/debian-12"
    api.answer("GET", family, "image_family.json")
    api.answer("POST", f"{zone}/instances", "insert_operation.json")
    api.answer("GET", f"{zone}/operations/operation-insert-cpu-1", "operation_done.json")
    api.answer("GET", f"{zone}/instances/[^/]+", "not_found.json", status=404, regex=True)
    api.answer("GET", f"{zone}/instances/cpu-1", "instance.json")
    api.answer("GET", f"{zone}/instances", "instances.json")
    api.answer("GET", f"{GCE_PATH}/aggregated/disks", "aggregated_disks.json")
    api.answer("DELETE", f"{zone}/instances/[^/]+", "not_found.json", status=404, regex=True)
    api.answer("DELETE", f"{zone}/instances/cpu-1", "delete_operation.json")
    return api


def test_gce_create_sends_labels_key_startup_script_and_preemptible(
    gce_api: Recorded, gce_env: dict[str, str]
) -> None:
    gce_api.answer("GET", f"{GCE_PATH}/zones/{GCE_ZONE}/instances/cpu-1", "instance_created.json")
    cloud = Cloud("gce", {**GCE_FIELDS, "spot": True}, gce_env)
    tags = {"shoal-boss": "Laptop.Local", "shoal-pool": "cpu"}
    node = cloud.create("cpu-1", tags, SCRIPT, KEY)
    (sent,) = gce_api.requests("POST", f"{GCE_PATH}/zones/{GCE_ZONE}/instances")
    body = sent.json()
    # Labels take only lower case letters, digits, _ and -.
    assert body["labels"] == {"shoal-boss": "laptop-local", "shoal-pool": "cpu"}
    metadata = {item["key"]: item["value"] for item in body["metadata"]["items"]}
    assert metadata == {"startup-script": SCRIPT, "ssh-keys": f"shoal:{KEY}"}
    assert body["scheduling"] == {
        "preemptible": True,
        "onHostMaintenance": "TERMINATE",
        "automaticRestart": False,
    }
    assert body["machineType"].endswith("/zones/europe-west1-b/machineTypes/e2-standard-2")
    (disk,) = body["disks"]
    assert disk["autoDelete"] is True
    assert disk["initializeParams"]["sourceImage"].endswith(
        "/projects/debian-cloud/global/images/debian-12-bookworm-v20240312"
    )
    assert body["networkInterfaces"][0]["accessConfigs"]  # a public address
    assert sent.headers["authorization"] == "Bearer ya29.recorded-token"
    assert (node.id, node.state, node.spot) == ("cpu-1", "pending", True)
    assert node.tags == {"shoal-boss": "b-7f3a", "shoal-pool": "cpu"}
    assert node.price is not None and 0.05 < node.price < 0.1  # e2-standard-2, europe-west1


def test_gce_private_address_asks_for_no_public_one(
    gce_api: Recorded, gce_env: dict[str, str]
) -> None:
    cloud = Cloud("gce", {**GCE_FIELDS, "address": "private"}, gce_env)
    cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    (sent,) = gce_api.requests("POST", f"{GCE_PATH}/zones/{GCE_ZONE}/instances")
    assert not sent.json()["networkInterfaces"][0].get("accessConfigs")
    assert "preemptible" not in sent.json().get("scheduling", {})


def test_gce_find_nodes_and_destroy(gce_api: Recorded, gce_env: dict[str, str]) -> None:
    cloud = Cloud("gce", GCE_FIELDS, gce_env)
    found = {n.id: n for n in cloud.find({"shoal-boss": "b-7f3a"})}
    assert sorted(found) == ["cpu-1", "cpu-2"]
    assert found["cpu-1"].public_ips == ("34.76.5.120",) and found["cpu-1"].state == "running"
    assert found["cpu-2"].state == "stopped"  # GCE's TERMINATED: stopped, not deleted

    assert list(cloud.nodes(["cpu-1", "cpu-9"])) == ["cpu-1"]

    cloud.destroy(["cpu-1", "cpu-9"])
    deleted = [s.path.rsplit("/", 1)[-1] for s in gce_api.requests("DELETE", ".*")]
    assert deleted == ["cpu-1", "cpu-9"]
    # The delete's operation is not waited for.
    assert not gce_api.requests("GET", ".*/operations/operation-delete-cpu-1")


def test_gce_refusals_are_one_line(gce_api: Recorded, gce_env: dict[str, str]) -> None:
    zone = f"{GCE_PATH}/zones/{GCE_ZONE}"
    gce_api.answer("GET", f"{zone}/instances", "unauthorized.json", status=401)
    gce_api.answer("POST", f"{zone}/instances", "quota.json", status=403)
    cloud = Cloud("gce", GCE_FIELDS, gce_env)
    with pytest.raises(CloudAuthFailed) as refused:
        cloud.find(TAGS)
    assert "Invalid Credentials" in one_line(refused)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(refused.value)
    with pytest.raises(CloudRefused) as quota:
        cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    assert "Quota 'CPUS' exceeded" in one_line(quota)


def test_gce_refused_service_account_is_one_line(
    gce_api: Recorded, gce_env: dict[str, str]
) -> None:
    refusal = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    gce_api.answer("POST", "/o/oauth2/token", status=400, body=refusal)
    with pytest.raises(CloudAuthFailed) as refused:
        Cloud("gce", GCE_FIELDS, gce_env)
    assert "Invalid JWT Signature" in one_line(refused)
    assert "BEGIN PRIVATE KEY" not in str(refused.value)


# --- Azure --------------------------------------------------------------------------------

AZ_SUB = "5e3c4f7a-0b1d-4a52-9f3e-8c2d7b6a1e90"
AZ_ENV = {
    "AZURE_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "AZURE_CLIENT_ID": "0f6a3e3b-7c55-4b73-8d2f-1d5e6f7a8b9c",
    "AZURE_CLIENT_SECRET": "Qx8Q~recorded.client.secret",
    "AZURE_SUBSCRIPTION_ID": AZ_SUB,
    "HOME": "/nonexistent",
}
AZ_FIELDS = {
    "location": "westeurope",
    "resource_group": "shoal",
    "network": "shoal-net",
    "image": "Debian:debian-12:12:latest",
    "size": "Standard_D2s_v3",
}
AZ_GROUP = f"/subscriptions/{AZ_SUB}/resourceGroups/shoal/providers"
AZ_VMS = f"{AZ_GROUP}/Microsoft.Compute/virtualMachines"


@pytest.fixture
def azure_api(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    api = recorded(monkeypatch, "azure")
    api.answer("POST", f"/{AZ_ENV['AZURE_TENANT_ID']}/oauth2/token", "token.json")
    api.answer("PUT", f"{AZ_VMS}/cpu-1", "vm_created.json", status=201)
    api.answer("GET", AZ_VMS, "vms.json")
    api.answer("GET", f"{AZ_VMS}/[^/]+", "not_found.json", status=404, regex=True)
    for name, power in (("cpu-1", "running"), ("cpu-2", "deallocated")):
        api.answer("GET", f"{AZ_VMS}/{name}", f"vm_{name}.json")
        api.answer("GET", f"{AZ_VMS}/{name}/InstanceView", f"instance_view_{power}.json")
        nic = f"{AZ_GROUP}/Microsoft.Network/networkInterfaces/{name}-nic"
        api.answer("GET", nic, f"nic_{name}.json")
    address = f"{AZ_GROUP}/Microsoft.Network/publicIPAddresses/cpu-1-public-ip"
    api.answer("GET", address, "public_ip_cpu-1.json")
    api.answer("DELETE", f"{AZ_VMS}/[^/]+", "not_found.json", status=404, regex=True)
    api.answer("DELETE", f"{AZ_VMS}/cpu-1", status=202)
    return api


def test_azure_create_is_one_put_with_tags_key_custom_data_and_spot(azure_api: Recorded) -> None:
    cloud = Cloud("azure", {**AZ_FIELDS, "spot": True, "security_group": "ssh-in"}, AZ_ENV)
    node = cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    (sent,) = [s for s in azure_api.sent if s.method != "GET" and "oauth2" not in s.path]
    assert (sent.method, sent.path) == ("PUT", f"{AZ_VMS}/cpu-1")
    body = sent.json()
    assert body["tags"] == TAGS and body["location"] == "westeurope"
    properties = body["properties"]
    os_profile = properties["osProfile"]
    assert base64.b64decode(os_profile["customData"]).decode() == SCRIPT
    assert os_profile["adminUsername"] == "shoal"
    assert os_profile["linuxConfiguration"]["disablePasswordAuthentication"] is True
    assert os_profile["linuxConfiguration"]["ssh"]["publicKeys"] == [
        {"path": "/home/shoal/.ssh/authorized_keys", "keyData": KEY}
    ]
    assert (properties["priority"], properties["evictionPolicy"]) == ("Spot", "Delete")
    assert properties["storageProfile"]["imageReference"] == {
        "publisher": "Debian",
        "offer": "debian-12",
        "sku": "12",
        "version": "latest",
    }
    # Interface, public address and disk are made with the VM and deleted with it.
    assert properties["storageProfile"]["osDisk"]["deleteOption"] == "Delete"
    (interface,) = properties["networkProfile"]["networkInterfaceConfigurations"]
    assert interface["properties"]["deleteOption"] == "Delete"
    assert interface["properties"]["networkSecurityGroup"]["id"].endswith(
        "/networkSecurityGroups/ssh-in"
    )
    (address,) = interface["properties"]["ipConfigurations"]
    assert address["properties"]["subnet"]["id"].endswith(
        "/virtualNetworks/shoal-net/subnets/default"
    )
    assert address["properties"]["publicIPAddressConfiguration"]["properties"] == {
        "deleteOption": "Delete",
        "publicIPAllocationMethod": "Static",
    }
    assert sent.headers["authorization"].startswith("Bearer eyJ0eXAi")
    assert (node.id, node.state, node.spot) == (f"{AZ_VMS}/cpu-1", "pending", True)
    assert node.tags == TAGS and node.price is not None and node.price > 0


def test_azure_find_nodes_and_destroy(azure_api: Recorded) -> None:
    cloud = Cloud("azure", {**AZ_FIELDS, "address": "private"}, AZ_ENV)
    found = {n.name: n for n in cloud.find({"shoal-boss": "b-7f3a"})}
    assert sorted(found) == ["cpu-1", "cpu-2"]
    assert found["cpu-1"].state == "running" and found["cpu-1"].spot
    assert found["cpu-1"].public_ips == ("20.93.41.17",)
    assert found["cpu-1"].private_ips == ("10.0.0.4",)
    assert found["cpu-2"].state == "stopped" and found["cpu-2"].public_ips == ()

    gone = f"{AZ_VMS}/cpu-9"
    assert list(cloud.nodes([f"{AZ_VMS}/cpu-1", gone])) == [f"{AZ_VMS}/cpu-1"]

    cloud.destroy([f"{AZ_VMS}/cpu-1", gone])
    assert [s.path for s in azure_api.requests("DELETE", ".*")] == [f"{AZ_VMS}/cpu-1", gone]


def test_azure_refusals_are_one_line(azure_api: Recorded) -> None:
    azure_api.answer("PUT", f"{AZ_VMS}/cpu-1", "image_not_found.json", status=404)
    cloud = Cloud("azure", AZ_FIELDS, AZ_ENV)
    with pytest.raises(CloudRefused) as bad:
        cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    assert "PlatformImageNotFound" in one_line(bad)

    token = f"/{AZ_ENV['AZURE_TENANT_ID']}/oauth2/token"
    azure_api.answer("POST", token, "token_refused.json", status=401)
    with pytest.raises(CloudAuthFailed) as refused:
        Cloud("azure", AZ_FIELDS, AZ_ENV)
    line = one_line(refused)
    assert "AADSTS7000215: Invalid client secret provided" in line
    assert "AZURE_CLIENT_SECRET" in line and AZ_ENV["AZURE_CLIENT_SECRET"] not in line


def test_azure_image_must_be_a_urn_or_a_resource_id(azure_api: Recorded) -> None:
    cloud = Cloud("azure", {**AZ_FIELDS, "image": "debian-12"}, AZ_ENV)
    with pytest.raises(Exception, match=r"publisher:offer:sku:version"):
        cloud.create("cpu-1", TAGS, SCRIPT, KEY)


# --- OpenStack ----------------------------------------------------------------------------

OS_ENV = {
    "OS_AUTH_URL": "https://keystone.example.org:5000/v3",
    "OS_USERNAME": "shoal-user",
    "OS_PASSWORD": "recorded-os-password",
    "OS_PROJECT_NAME": "shoal",
    "OS_USER_DOMAIN_NAME": "Default",
    "OS_REGION_NAME": "RegionOne",
    "HOME": "/nonexistent",
}
OS_FIELDS = {
    "image": "4949f9ee-2421-4c81-8b49-13119446008b",
    "size": "m1.medium",
    "networks": ["9a1e4c56-7a2b-4f0d-8c3e-2b1d0f6e5a47"],
    "security_groups": ["ssh-in"],
}
OS_SERVERS = "/v2.1/a1b2c3d4e5f60718293a4b5c6d7e8f90/servers"
OS_ID = "2ce4c5b3-2866-4972-93ce-77a2ea46a7f9"
OS_GONE = "0f0f0f0f-0000-4000-8000-000000000000"


@pytest.fixture
def openstack_api(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    api = recorded(monkeypatch, "openstack")
    token = {"X-Subject-Token": "gAAAAAB-recorded-token"}
    api.answer("POST", "/v3/auth/tokens", "token.json", status=201, headers=token)
    api.answer("GET", "/v2.1/a1b2c3d4e5f60718293a4b5c6d7e8f90/flavors/detail", "flavors.json")
    api.answer("POST", OS_SERVERS, "create.json", status=202)
    api.answer("GET", f"{OS_SERVERS}/[^/]+", "not_found.json", status=404, regex=True)
    api.answer("GET", f"{OS_SERVERS}/detail", "servers.json")
    api.answer("GET", f"{OS_SERVERS}/{OS_ID}", "server.json")
    api.answer("DELETE", f"{OS_SERVERS}/[^/]+", "not_found.json", status=404, regex=True)
    api.answer("DELETE", f"{OS_SERVERS}/{OS_ID}", status=204)
    return api


def test_openstack_create_sends_metadata_user_data_networks(openstack_api: Recorded) -> None:
    openstack_api.answer("GET", f"{OS_SERVERS}/{OS_ID}", "server_created.json")
    cloud = Cloud("openstack", {**OS_FIELDS, "zone": "nova-2"}, OS_ENV)
    node = cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    (auth,) = openstack_api.requests("POST", "/v3/auth/tokens")
    identity = auth.json()["auth"]
    assert identity["identity"]["password"]["user"]["name"] == "shoal-user"
    assert identity["scope"]["project"]["name"] == "shoal"
    (sent,) = openstack_api.requests("POST", OS_SERVERS)
    server = sent.json()["server"]
    assert server["metadata"] == TAGS
    assert base64.b64decode(server["user_data"]).decode() == SCRIPT
    assert server["flavorRef"] == "3"  # m1.medium, by name
    assert server["imageRef"] == OS_FIELDS["image"]
    assert server["networks"] == [{"uuid": OS_FIELDS["networks"][0]}]
    assert server["security_groups"] == [{"name": "ssh-in"}]
    assert server["availability_zone"] == "nova-2"
    assert "key_name" not in server  # the key travels in the user-data
    assert sent.headers["x-auth-token"] == "gAAAAAB-recorded-token"
    assert sent.host == "compute.example.org"
    assert (node.id, node.state, node.tags, node.price) == (OS_ID, "pending", TAGS, None)


def test_openstack_unknown_flavor_names_the_known_ones(openstack_api: Recorded) -> None:
    cloud = Cloud("openstack", {**OS_FIELDS, "size": "m9.huge"}, OS_ENV)
    with pytest.raises(Exception, match=r"no flavor 'm9.huge' \(it has: c2.large, m1.medium"):
        cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    assert not openstack_api.requests("POST", OS_SERVERS)


def test_openstack_find_nodes_and_destroy(openstack_api: Recorded) -> None:
    cloud = Cloud("openstack", OS_FIELDS, OS_ENV)
    found = {n.name: n for n in cloud.find({"shoal-boss": "b-7f3a"})}
    assert sorted(found) == ["cpu-1", "cpu-2"]
    assert found["cpu-1"].state == "running" and found["cpu-2"].state == "stopped"
    assert found["cpu-1"].public_ips == ("203.0.113.40",)
    assert found["cpu-1"].private_ips == ("10.0.0.12",)

    assert list(cloud.nodes([OS_ID, OS_GONE])) == [OS_ID]

    cloud.destroy([OS_ID, OS_GONE])
    deleted = [s.path.rsplit("/", 1)[-1] for s in openstack_api.requests("DELETE", ".*")]
    assert deleted == [OS_ID, OS_GONE]


def test_openstack_refusals_are_one_line(openstack_api: Recorded) -> None:
    openstack_api.answer("POST", OS_SERVERS, "bad_image.json", status=400)
    cloud = Cloud("openstack", OS_FIELDS, OS_ENV)
    with pytest.raises(CloudRefused) as bad:
        cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    assert "Can not find requested image" in one_line(bad)

    openstack_api.answer("POST", "/v3/auth/tokens", "unauthorized.json", status=401)
    cloud = Cloud("openstack", OS_FIELDS, OS_ENV)
    with pytest.raises(CloudAuthFailed) as refused:
        cloud.find(TAGS)
    line = one_line(refused)
    assert "OS_" in line and OS_ENV["OS_PASSWORD"] not in line


# --- OpenNebula ---------------------------------------------------------------------------

ONE_ENV = {"ONE_USER": "shoal", "ONE_PASSWORD": "recorded-one-password", "HOME": "/nonexistent"}
ONE_FIELDS = {
    "endpoint": "https://one.example.org:4567",
    "image": "7",
    "size": "medium",
    "networks": ["3"],
}


@pytest.fixture
def one_api(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    api = recorded(monkeypatch, "opennebula")
    api.answer("POST", "/compute", "compute_created.xml", status=201)
    api.answer("GET", "/compute", "computes.xml")
    api.answer("GET", r"/compute/\d+", status=404, body="Error: VM not found", regex=True)
    for vm in (42, 43, 44, 45):
        api.answer("GET", f"/compute/{vm}", f"compute_{vm}.xml")
    api.answer("GET", "/instance_type", "instance_types.xml")
    api.answer("GET", "/instance_type/medium", "instance_type_medium.xml")
    api.answer("DELETE", r"/compute/\d+", status=404, body="Error: VM not found", regex=True)
    api.answer("DELETE", "/compute/42", status=204)
    return api


def test_opennebula_create_puts_tags_key_and_start_script_in_the_context(
    one_api: Recorded,
) -> None:
    from xml.etree import ElementTree

    cloud = Cloud("opennebula", ONE_FIELDS, ONE_ENV)
    node = cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    (sent,) = one_api.requests("POST", "/compute")
    vm = ElementTree.fromstring(sent.body)
    context = {e.tag: e.text for e in vm.find("CONTEXT") or ()}
    assert json.loads(context["SHOAL_TAGS"] or "") == TAGS
    assert base64.b64decode(context["START_SCRIPT_BASE64"] or "").decode() == SCRIPT
    assert context["SSH_PUBLIC_KEY"] == KEY and context["USERNAME"] == "shoal"
    assert vm.findtext("NAME") == "cpu-1" and vm.findtext("INSTANCE_TYPE") == "medium"
    storage = vm.find("DISK/STORAGE")
    assert storage is not None and storage.attrib["href"] == "/storage/7"
    network = vm.find("NIC/NETWORK")
    assert network is not None and network.attrib["href"] == "/network/3"
    # Basic authentication with the password's SHA-1, as OpenNebula's OCCI server takes it.
    assert sent.headers["authorization"].startswith("Basic ")
    assert (
        ONE_ENV["ONE_PASSWORD"] not in base64.b64decode(sent.headers["authorization"][6:]).decode()
    )
    assert (node.id, node.state, node.tags) == ("42", "pending", TAGS)
    assert node.private_ips == ("192.168.50.12",) and node.price is None


def test_opennebula_find_nodes_and_destroy(one_api: Recorded) -> None:
    cloud = Cloud("opennebula", ONE_FIELDS, ONE_ENV)
    found = {n.id: n for n in cloud.find({"shoal-boss": "b-7f3a"})}
    # A STOPPED VM is still there to be deleted: find keeps it.
    assert {k: n.state for k, n in found.items()} == {"42": "running", "43": "stopped"}
    assert found["42"].public_ips == ("198.51.100.23",)
    assert found["42"].private_ips == ("192.168.50.12",)

    assert list(cloud.nodes(["42", "99"])) == ["42"]

    cloud.destroy(["42", "99"])
    assert [s.path for s in one_api.requests("DELETE", ".*")] == ["/compute/42", "/compute/99"]


def test_opennebula_refusals_are_one_line(one_api: Recorded) -> None:
    one_api.answer("POST", "/compute", "no_image.txt", status=400)
    cloud = Cloud("opennebula", ONE_FIELDS, ONE_ENV)
    with pytest.raises(CloudRefused) as bad:
        cloud.create("cpu-1", TAGS, SCRIPT, KEY)
    assert "Image 99 does not exist" in one_line(bad)

    one_api.answer("GET", "/compute", "unauthorized.txt", status=401)
    with pytest.raises(CloudAuthFailed) as refused:
        cloud.find(TAGS)
    line = one_line(refused)
    assert "couldn't be authenticated" in line and "ONE_PASSWORD" in line
    assert ONE_ENV["ONE_PASSWORD"] not in line

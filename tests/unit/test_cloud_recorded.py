"""The cloud layer's per-cloud details against recorded API answers (no network at all).

No emulator of DigitalOcean, GCE, Azure, OpenStack or OpenNebula runs here, so
each is tested libcloud's own way: the driver's connection answers from files
under ``cloud_answers/<cloud>/``, shaped as each API documents its answers,
and the test asserts on the requests the driver sent (tags, public key,
user-data, spot flag) and on what :class:`Cloud` makes of the answers.
"""

from __future__ import annotations

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

"""Each cloud's pool-file fields and where its credentials are read (no libcloud, no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.exceptions import BadInput
from shoal.launch.cloud.api import Cloud, NodeInfo
from shoal.launch.cloud.kinds import (
    KINDS,
    SCHEMAS,
    MissingCredentials,
    credentials_of,
    public_key,
    with_defaults,
)

NOWHERE = {"HOME": "/nonexistent"}


def missing(kind: str, environ: dict[str, str], fields: dict[str, object] | None = None) -> str:
    check = SCHEMAS[kind].credentials
    assert check is not None
    line = check(fields or {}, environ)
    assert line is not None and "\n" not in line
    return line


def test_checking_a_pool_file_imports_no_libcloud() -> None:
    code = (
        "import sys, shoal.launch.cloud.kinds as k\n"
        "[s.credentials({}, {}) for s in k.SCHEMAS.values()]\n"
        "print(sorted(m for m in sys.modules if m.startswith('libcloud')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_cloud_is_rented_needs_image_and_size_and_has_spot_only_where_it_exists() -> None:
    assert set(SCHEMAS) == set(KINDS)
    for kind, schema in SCHEMAS.items():
        assert schema.rented, kind
        assert schema.fields["image"].required and schema.fields["size"].required, kind
        assert schema.fields["address"].choices == ("public", "private")
        assert ("spot" in schema.fields) == (kind in ("aws", "gce", "azure")), kind
    assert SCHEMAS["aws"].fields["region"].required
    assert SCHEMAS["opennebula"].fields["endpoint"].required
    required = {k for k, f in SCHEMAS["azure"].fields.items() if f.required}
    assert required == {"image", "size", "location", "resource_group", "network"}


def test_defaults_fill_what_the_pool_leaves_out() -> None:
    fields = with_defaults("gce", {"zone": "europe-west1-b", "user": "debian", "python": None})
    assert fields["user"] == "debian" and fields["python"] == "python3"
    assert (fields["key"], fields["address"], fields["boot_timeout"]) == (
        "~/.ssh/id_ed25519",
        "public",
        300.0,
    )
    assert fields["network"] == "default" and fields["spot"] is False
    assert with_defaults("aws", {})["user"] == "shoal"


@pytest.mark.parametrize(
    ("kind", "variables"),
    [
        ("aws", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "~/.aws/credentials"]),
        ("gce", ["GOOGLE_APPLICATION_CREDENTIALS"]),
        ("azure", ["AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]),
        ("digitalocean", ["DIGITALOCEAN_ACCESS_TOKEN"]),
        ("openstack", ["OS_AUTH_URL", "OS_PASSWORD", "OS_CLOUD", "clouds.yaml"]),
        ("opennebula", ["ONE_USER", "ONE_PASSWORD", "~/.one/one_auth"]),
    ],
)
def test_a_missing_credential_names_what_the_cloud_reads(kind: str, variables: list[str]) -> None:
    line = missing(kind, NOWHERE)
    for variable in variables:
        assert variable in line


def test_a_missing_credential_stops_a_cloud_before_any_call() -> None:
    with pytest.raises(MissingCredentials, match="DIGITALOCEAN_ACCESS_TOKEN") as refused:
        Cloud("digitalocean", {"image": "debian-12-x64", "size": "s-1vcpu-1gb"}, NOWHERE)
    assert refused.value.exit_code == 2


def test_azure_names_only_the_variables_it_lacks() -> None:
    environ = {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", **NOWHERE}
    assert missing("azure", environ).endswith("set AZURE_CLIENT_SECRET and AZURE_SUBSCRIPTION_ID")


def test_aws_reads_a_profile_of_the_credentials_file(tmp_path: Path) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s1\n"
        "[work]\naws_access_key_id = AKIAWORK\naws_secret_access_key = s2\n"
        "aws_session_token = t2\n"
    )
    home = {"HOME": str(tmp_path)}
    assert credentials_of("aws", {}, home)["key"] == "AKIADEFAULT"
    work = credentials_of("aws", {}, {**home, "AWS_PROFILE": "work"})
    assert (work["key"], work["secret"], work["token"]) == ("AKIAWORK", "s2", "t2")
    assert "profile [other]" in missing("aws", {**home, "AWS_PROFILE": "other"})
    # The variables win over the file.
    both = {**home, "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s3"}
    assert credentials_of("aws", {}, both)["key"] == "AKIAENV"


def test_gce_takes_a_service_account_key_and_its_project(tmp_path: Path) -> None:
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"type": "authorized_user", "client_id": "x"}))
    environ = {"GOOGLE_APPLICATION_CREDENTIALS": str(key), **NOWHERE}
    assert "is not a service account key" in missing("gce", environ)
    account = {"type": "service_account", "client_email": "a@p.iam", "private_key": "K"}
    key.write_text(json.dumps(account))
    assert "set the pool's 'project'" in missing("gce", environ)
    assert credentials_of("gce", {"project": "p1"}, environ)["project"] == "p1"
    key.write_text(json.dumps({**account, "project_id": "p2"}))
    assert credentials_of("gce", {}, environ)["email"] == "a@p.iam"
    assert credentials_of("gce", {}, environ)["project"] == "p2"
    key.write_text("{not json")
    assert "cannot be read as JSON" in missing("gce", environ)


def test_openstack_reads_clouds_yaml_for_os_cloud(tmp_path: Path) -> None:
    folder = tmp_path / ".config" / "openstack"
    folder.mkdir(parents=True)
    (folder / "clouds.yaml").write_text(
        "clouds:\n"
        "  lab:\n"
        "    region_name: RegionTwo\n"
        "    auth:\n"
        "      auth_url: https://keystone.lab:5000/v3\n"
        "      username: u\n"
        "      password: p\n"
        "      project_name: shoal\n"
    )
    environ = {"HOME": str(tmp_path), "OS_CLOUD": "lab"}
    found = credentials_of("openstack", {}, environ)
    assert (found["auth_url"], found["username"], found["region"]) == (
        "https://keystone.lab:5000/v3",
        "u",
        "RegionTwo",
    )
    assert (
        credentials_of("openstack", {"region": "RegionThree"}, environ)["region"] == "RegionThree"
    )
    assert "OS_CLOUD names 'elsewhere'" in missing(
        "openstack", {"HOME": str(tmp_path), "OS_CLOUD": "elsewhere"}
    )


def test_opennebula_reads_one_auth(tmp_path: Path) -> None:
    (tmp_path / ".one").mkdir()
    (tmp_path / ".one" / "one_auth").write_text("oneadmin:opensesame\n")
    found = credentials_of("opennebula", {}, {"HOME": str(tmp_path)})
    assert (found["user"], found["password"]) == ("oneadmin", "opensesame")
    (tmp_path / "elsewhere").write_text("no colon here\n")
    line = missing("opennebula", {"HOME": str(tmp_path), "ONE_AUTH": str(tmp_path / "elsewhere")})
    assert "elsewhere" in line and "opensesame" not in line


def test_the_public_key_is_the_pairs_pub_file(tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    with pytest.raises(BadInput, match="ssh-keygen -t ed25519") as none:
        public_key(str(key))
    assert "\n" not in str(none.value)
    (tmp_path / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3Nza shoal@test\n")
    assert public_key(str(key)) == "ssh-ed25519 AAAAC3Nza shoal@test"
    assert public_key("~/id_ed25519", {"HOME": str(tmp_path)}) == "ssh-ed25519 AAAAC3Nza shoal@test"


def test_the_address_shoal_connects_to_follows_the_pools_choice() -> None:
    both = NodeInfo("i-1", "cpu-1", "running", ("203.0.113.9",), ("10.0.0.9",))
    assert (both.address("public"), both.address("private")) == ("203.0.113.9", "10.0.0.9")
    private_only = NodeInfo("i-2", "cpu-2", "running", (), ("10.0.0.10",))
    assert private_only.address("public") == "10.0.0.10"  # public where it has one
    assert NodeInfo("i-3", "cpu-3", "pending", (), ()).address() == ""

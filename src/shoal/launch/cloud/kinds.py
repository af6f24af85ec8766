"""What a pool file may say for each cloud, and where each cloud's credentials are read.

This module imports no libcloud: it is read whenever a pool file is checked.

Fields every cloud takes:

==============  ==========================================================
``image``       the image to boot (required): an AMI id, a GCE image name
                or URL, ``publisher:offer:sku:version`` or an image
                resource id on Azure, a DigitalOcean slug or id, an
                OpenStack image id, an OpenNebula storage id
``size``        the machine type (required): ``c6i.2xlarge``, ``e2-standard-4``,
                ``Standard_D4s_v5``, ``s-2vcpu-4gb``, a flavor name or id,
                an OpenNebula instance type
``user``        the account shoal logs in as (default ``shoal``); gce and
                azure make it (with sudo), elsewhere the VM's user-data makes
                it where the image lacks it (without sudo) and authorises
                the key for it
``key``         the ssh private key (default ``~/.ssh/id_ed25519``); its
                ``.pub`` is put on the VM
``endpoint``    the API's URL, for private clouds and emulators
``address``     which address shoal connects to: ``public`` (default; the
                private one where the VM has no public one) or ``private``
``python``      the remote python command (default ``python3``)
``ssh_options`` more ``ssh`` options, as a list
``boot_timeout`` seconds a VM has to answer on ssh (default 300)
==============  ==========================================================

``spot`` (bool) exists only where the cloud has it: ``aws`` (a spot instance),
``gce`` (preemptible), ``azure`` (priority Spot, evicted by deletion).

Per cloud, and the credentials it reads (never from the pool file):

* ``aws``: ``region`` (required), ``subnet``, ``security_groups`` (ids
  ``sg-…``, which need ``subnet``, or names), ``key_name`` (an existing key
  pair, optional: the key travels in the user-data otherwise).
  Credentials: ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` (and
  ``AWS_SESSION_TOKEN``), else the ``AWS_PROFILE`` (or ``default``) profile of
  ``~/.aws/credentials`` (or ``AWS_SHARED_CREDENTIALS_FILE``).
* ``gce``: ``zone`` (required), ``project`` (default: the service account's),
  ``network`` (default ``default``), ``subnetwork``.
  Credentials: the service account key file named by
  ``GOOGLE_APPLICATION_CREDENTIALS``.
* ``azure``: ``location`` and ``resource_group`` (required), ``network``
  (the virtual network, required), ``subnet`` (default ``default``),
  ``network_resource_group`` (default: ``resource_group``), ``security_group``
  (a network security group that lets ssh in).
  Credentials: ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``,
  ``AZURE_CLIENT_SECRET`` and ``AZURE_SUBSCRIPTION_ID`` (a service principal).
* ``digitalocean``: ``region`` (required), ``ssh_keys`` (ids or fingerprints
  of keys already in the account, optional: without one DigitalOcean mails
  a root password).
  Credentials: ``DIGITALOCEAN_ACCESS_TOKEN``.
* ``openstack``: ``auth_url`` (default ``OS_AUTH_URL``), ``region`` (default
  ``OS_REGION_NAME``), ``networks`` (network ids), ``security_groups``
  (names), ``key_name``, ``zone`` (availability zone).
  Credentials: ``OS_USERNAME``, ``OS_PASSWORD``, ``OS_PROJECT_NAME`` (with
  ``OS_USER_DOMAIN_NAME``, ``OS_PROJECT_DOMAIN_ID``) or
  ``OS_APPLICATION_CREDENTIAL_ID`` and ``OS_APPLICATION_CREDENTIAL_SECRET``;
  or the ``OS_CLOUD`` entry of ``~/.config/openstack/clouds.yaml`` (or
  ``/etc/openstack/clouds.yaml``, or ``OS_CLIENT_CONFIG_FILE``).
* ``opennebula``: ``endpoint`` (required: the OCCI server's URL),
  ``networks`` (network ids), ``api_version`` (of the OCCI server, default
  ``3.8``).
  Credentials: ``ONE_USER`` and ``ONE_PASSWORD``, else the ``user:password``
  line of the file ``ONE_AUTH`` names (default ``~/.one/one_auth``).
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shoal.exceptions import BadInput
from shoal.launch.contract import FieldSpec, ProviderSchema

__all__ = [
    "AWS",
    "AZURE",
    "DEFAULTS",
    "DIGITALOCEAN",
    "GCE",
    "KINDS",
    "OPENNEBULA",
    "OPENSTACK",
    "SCHEMAS",
    "MissingCredentials",
    "credentials_of",
    "expand_path",
    "public_key",
    "with_defaults",
]

KINDS = ("aws", "gce", "azure", "digitalocean", "openstack", "opennebula")
# The account shoal logs in as: the same on every image, made at first boot
# where the image lacks it, so a pool file need not know the image's own user.
DEFAULT_USER = "shoal"
DEFAULT_KEY = "~/.ssh/id_ed25519"
DEFAULT_BOOT_TIMEOUT = 300.0


class MissingCredentials(BadInput):
    """A cloud's credentials are not where it reads them from."""


_COMMON: dict[str, FieldSpec] = {
    "image": FieldSpec("str", required=True, help="the image the VM boots from"),
    "size": FieldSpec("str", required=True, help="the machine type"),
    "user": FieldSpec("str", help=f"the account shoal logs in as (default {DEFAULT_USER})"),
    "key": FieldSpec("str", help=f"the ssh private key; its .pub goes on the VM ({DEFAULT_KEY})"),
    "endpoint": FieldSpec("str", help="the API's URL (private clouds, emulators)"),
    "address": FieldSpec(
        "str",
        help="which address shoal connects to (default public, where the VM has one)",
        choices=("public", "private"),
    ),
    "python": FieldSpec("str", help="the remote python command (default python3)"),
    "ssh_options": FieldSpec("list", help="more ssh options"),
    "boot_timeout": FieldSpec("number", help="seconds a VM has to answer on ssh (default 300)"),
}
_SPOT = {"spot": FieldSpec("bool", help="a spot (preemptible) VM: cheaper, may be taken away")}

DEFAULTS: dict[str, Any] = {
    "user": DEFAULT_USER,
    "key": DEFAULT_KEY,
    "address": "public",
    "python": "python3",
    "ssh_options": [],
    "boot_timeout": DEFAULT_BOOT_TIMEOUT,
    "spot": False,
}
_KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "gce": {"network": "default"},
    "azure": {"subnet": "default"},
    "opennebula": {"api_version": "3.8"},
}


def with_defaults(kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A pool's provider fields with each one it leaves out at its default."""
    merged = {**DEFAULTS, **_KIND_DEFAULTS.get(kind, {})}
    merged.update({k: v for k, v in fields.items() if v is not None})
    return merged


# --- where each cloud's credentials are read ------------------------------------------


def _home(environ: Mapping[str, str]) -> Path:
    return Path(environ.get("HOME") or os.path.expanduser("~"))


def expand_path(value: str, environ: Mapping[str, str]) -> Path:
    """A path from a pool file or a variable, ``~`` being ``$HOME`` of ``environ``."""
    if value == "~" or value.startswith("~/"):
        return _home(environ) / value[2:]
    return Path(value)


def _aws(fields: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return {"key": key, "secret": secret, "token": environ.get("AWS_SESSION_TOKEN", "")}
    where = environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    profile = environ.get("AWS_PROFILE") or "default"
    found = configparser.ConfigParser(interpolation=None)
    try:
        found.read(expand_path(where, environ), encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as e:
        raise MissingCredentials(f"pool needs AWS credentials: {where} does not parse ({e})") from e
    if found.has_option(profile, "aws_access_key_id") and found.has_option(
        profile, "aws_secret_access_key"
    ):
        section = found[profile]
        return {
            "key": section["aws_access_key_id"],
            "secret": section["aws_secret_access_key"],
            "token": section.get("aws_session_token", ""),
        }
    raise MissingCredentials(
        "pool needs AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
        f"or put them in profile [{profile}] of {where} (AWS_PROFILE picks the profile)"
    )


def _gce(fields: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    where = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not where:
        raise MissingCredentials(
            "pool needs GCE credentials: set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service account's JSON key file"
        )
    try:
        account = json.loads(expand_path(where, environ).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MissingCredentials(
            f"pool needs GCE credentials: GOOGLE_APPLICATION_CREDENTIALS names {where}, "
            f"which cannot be read as JSON ({type(e).__name__})"
        ) from e
    if (
        not isinstance(account, dict)
        or account.get("type") != "service_account"
        or not account.get("client_email")
        or not account.get("private_key")
    ):
        raise MissingCredentials(
            f"pool needs GCE credentials: {where} (GOOGLE_APPLICATION_CREDENTIALS) is not a "
            "service account key (type service_account, client_email, private_key)"
        )
    project = fields.get("project") or account.get("project_id")
    if not project:
        raise MissingCredentials(
            f"pool needs a GCE project: set the pool's 'project' ({where} names none)"
        )
    return {"email": account["client_email"], "path": where, "project": str(project)}


_AZURE_VARIABLES = (
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_SUBSCRIPTION_ID",
)


def _azure(fields: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    missing = [name for name in _AZURE_VARIABLES if not environ.get(name)]
    if missing:
        raise MissingCredentials(
            "pool needs Azure credentials (a service principal): set "
            + ", ".join(missing[:-1])
            + (" and " if len(missing) > 1 else "")
            + missing[-1]
        )
    return {
        "tenant": environ["AZURE_TENANT_ID"],
        "client": environ["AZURE_CLIENT_ID"],
        "secret": environ["AZURE_CLIENT_SECRET"],
        "subscription": environ["AZURE_SUBSCRIPTION_ID"],
    }


def _digitalocean(fields: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    token = environ.get("DIGITALOCEAN_ACCESS_TOKEN")
    if not token:
        raise MissingCredentials(
            "pool needs DigitalOcean credentials: set DIGITALOCEAN_ACCESS_TOKEN to an API token"
        )
    return {"token": token}


def _clouds_yaml(name: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The ``name`` entry of the first clouds.yaml found, as openstack's tools look for it."""
    import yaml

    places = [environ.get("OS_CLIENT_CONFIG_FILE") or ""]
    places += [str(_home(environ) / ".config/openstack/clouds.yaml"), "/etc/openstack/clouds.yaml"]
    for place in filter(None, places):
        try:
            data = yaml.safe_load(Path(place).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        entry = data.get("clouds", {}).get(name) if isinstance(data, dict) else None
        if isinstance(entry, dict):
            return entry
    return None


def _openstack(fields: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    values = {
        "auth_url": environ.get("OS_AUTH_URL", ""),
        "username": environ.get("OS_USERNAME", ""),
        "password": environ.get("OS_PASSWORD", ""),
        "project_name": environ.get("OS_PROJECT_NAME") or environ.get("OS_TENANT_NAME", ""),
        "user_domain_name": environ.get("OS_USER_DOMAIN_NAME", ""),
        "project_domain_id": environ.get("OS_PROJECT_DOMAIN_ID", ""),
        "application_credential_id": environ.get("OS_APPLICATION_CREDENTIAL_ID", ""),
        "application_credential_secret": environ.get("OS_APPLICATION_CREDENTIAL_SECRET", ""),
        "region": environ.get("OS_REGION_NAME", ""),
    }
    cloud = environ.get("OS_CLOUD")
    if cloud:
        entry = _clouds_yaml(cloud, environ)
        if entry is None:
            raise MissingCredentials(
                f"pool needs OpenStack credentials: OS_CLOUD names {cloud!r}, which is in no "
                "clouds.yaml (~/.config/openstack/clouds.yaml, /etc/openstack/clouds.yaml)"
            )
        auth = entry.get("auth")
        if not isinstance(auth, dict):
            auth = {}
        for key in values:
            if auth.get(key):
                values[key] = str(auth[key])
        if entry.get("region_name"):
            values["region"] = str(entry["region_name"])
    if fields.get("auth_url"):
        values["auth_url"] = str(fields["auth_url"])
    if fields.get("region"):
        values["region"] = str(fields["region"])
    by_password = values["username"] and values["password"] and values["project_name"]
    by_credential = values["application_credential_id"] and values["application_credential_secret"]
    if not values["auth_url"] or not (by_password or by_credential):
        raise MissingCredentials(
            "pool needs OpenStack credentials: set OS_AUTH_URL, OS_USERNAME, OS_PASSWORD and "
            "OS_PROJECT_NAME (or OS_APPLICATION_CREDENTIAL_ID and _SECRET), "
            "or OS_CLOUD naming an entry of ~/.config/openstack/clouds.yaml"
        )
    return values


def _opennebula(fields: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    user, password = environ.get("ONE_USER"), environ.get("ONE_PASSWORD")
    if user and password:
        return {"user": user, "password": password}
    where = environ.get("ONE_AUTH") or "~/.one/one_auth"
    try:
        line = expand_path(where, environ).read_text(encoding="utf-8").strip().splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        line = ""
    user, sep, password = line.partition(":")
    if not (user and sep and password):
        raise MissingCredentials(
            "pool needs OpenNebula credentials: set ONE_USER and ONE_PASSWORD, "
            f"or put user:password in {where} (ONE_AUTH names the file)"
        )
    return {"user": user, "password": password}


_LOADERS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], dict[str, str]]] = {
    "aws": _aws,
    "gce": _gce,
    "azure": _azure,
    "digitalocean": _digitalocean,
    "openstack": _openstack,
    "opennebula": _opennebula,
}


def credentials_of(
    kind: str, fields: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The credentials a cloud of this kind is reached with (:class:`MissingCredentials`
    naming the variables and files it reads when they are not there)."""
    return _LOADERS[kind](fields, os.environ if environ is None else environ)


def _missing(kind: str) -> Callable[[Mapping[str, Any], Mapping[str, str]], str | None]:
    def check(fields: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
        try:
            _LOADERS[kind](fields, environ)
        except MissingCredentials as e:
            return str(e)
        return None

    return check


def public_key(key: str, environ: Mapping[str, str] | None = None) -> str:
    """The public half (``KEY.pub``) of the pool's ssh key, one line."""
    where = expand_path(key, os.environ if environ is None else environ)
    pub = where.with_name(where.name + ".pub")
    try:
        text = pub.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(
            f"no public key at {pub} ({type(e).__name__}): make the pair with "
            f"'ssh-keygen -t ed25519 -f {where}', or set the pool's 'key'"
        ) from e
    if not text or "\n" in text:
        raise BadInput(f"{pub} is not one public key line: set the pool's 'key' to another pair")
    return text


# --- the schemas ----------------------------------------------------------------------


def _schema(kind: str, own: Mapping[str, FieldSpec], spot: bool) -> ProviderSchema:
    fields = {**_COMMON, **(_SPOT if spot else {}), **own}
    return ProviderSchema(fields=fields, rented=True, credentials=_missing(kind))


AWS = _schema(
    "aws",
    {
        "region": FieldSpec("str", required=True, help="the region, e.g. eu-west-1"),
        "subnet": FieldSpec("str", help="the subnet id (subnet-…) the VMs are placed in"),
        "security_groups": FieldSpec(
            "list", help="security group ids (sg-…, need subnet) or names"
        ),
        "key_name": FieldSpec("str", help="an existing key pair to put on the VMs as well"),
    },
    spot=True,
)
GCE = _schema(
    "gce",
    {
        "zone": FieldSpec("str", required=True, help="the zone, e.g. europe-west1-b"),
        "project": FieldSpec("str", help="the project (default: the service account's)"),
        "network": FieldSpec("str", help="the VPC network (default: default)"),
        "subnetwork": FieldSpec("str", help="the subnetwork, where the network has several"),
    },
    spot=True,
)
AZURE = _schema(
    "azure",
    {
        "location": FieldSpec("str", required=True, help="the location, e.g. westeurope"),
        "resource_group": FieldSpec("str", required=True, help="where the VMs are made"),
        "network": FieldSpec("str", required=True, help="the virtual network"),
        "subnet": FieldSpec("str", help="the virtual network's subnet (default: default)"),
        "network_resource_group": FieldSpec(
            "str", help="the virtual network's resource group (default: resource_group)"
        ),
        "security_group": FieldSpec("str", help="a network security group letting ssh in"),
    },
    spot=True,
)
DIGITALOCEAN = _schema(
    "digitalocean",
    {
        "region": FieldSpec("str", required=True, help="the region, e.g. fra1"),
        "ssh_keys": FieldSpec("list", help="ids or fingerprints of keys in the account"),
    },
    spot=False,
)
OPENSTACK = _schema(
    "openstack",
    {
        "auth_url": FieldSpec("str", help="the identity (keystone) URL (default: OS_AUTH_URL)"),
        "region": FieldSpec("str", help="the region (default: OS_REGION_NAME)"),
        "networks": FieldSpec("list", help="ids of the networks the VMs are attached to"),
        "security_groups": FieldSpec("list", help="names of security groups"),
        "key_name": FieldSpec("str", help="an existing key pair to put on the VMs as well"),
        "zone": FieldSpec("str", help="the availability zone"),
    },
    spot=False,
)
OPENNEBULA = _schema(
    "opennebula",
    {
        "endpoint": FieldSpec("str", required=True, help="the OCCI server's URL"),
        "networks": FieldSpec("list", help="ids of the virtual networks the VMs are attached to"),
        "api_version": FieldSpec(
            "str",
            help="the OCCI server's version (default 3.8)",
            choices=("2.0", "2.2", "3.0", "3.2", "3.6", "3.8"),
        ),
    },
    spot=False,
)

SCHEMAS: dict[str, ProviderSchema] = {
    "aws": AWS,
    "gce": GCE,
    "azure": AZURE,
    "digitalocean": DIGITALOCEAN,
    "openstack": OPENSTACK,
    "opennebula": OPENNEBULA,
}

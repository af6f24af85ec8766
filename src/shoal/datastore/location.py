"""Where a datastore lives: a folder, or an fsspec URL, with options for its filesystem.

``--data`` takes a folder (``./data``, ``file:///srv/data``) or a URL:
``s3://bucket/prefix``, ``gs://bucket/prefix``, ``az://container/prefix``
(``abfs://`` too), ``sftp://user@host[:port]/path``, or any other protocol
fsspec knows. ``--data-option KEY=VALUE`` passes settings to the filesystem
(``endpoint_url=http://...``, ``region=eu-west-1``, ``key_filename=~/.ssh/id``).

Credentials come from each library's usual environment and files
(``AWS_ACCESS_KEY_ID`` and ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``, ``~/.ssh`` and the ssh agent): never from a command line.
So a URL with a password in it and an option that names a secret are
refused, and a URL is shown with :func:`scrubbed` wherever it is shown.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from shoal.exceptions import BadInput

__all__ = ["EXTRAS", "is_url", "parse_options", "scrubbed", "storage_options"]

# URL scheme -> (the module its filesystem needs, the extra of shoal that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
    "sftp": ("paramiko", "sftp"),
    "ssh": ("paramiko", "sftp"),
}

# Option names that carry a secret: they belong in the library's environment or files.
_SECRET_WORDS = ("secret", "password", "passphrase", "token", "credential", "sas", "connection")
_SECRET_NAMES = {"key", "account_key", "pkey"}
# Where each library reads its credentials, for the message that refuses one.
_WHERE = {
    "s3": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials",
    "gcs": "GOOGLE_APPLICATION_CREDENTIALS or gcloud's login",
    "azure": "AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_CONNECTION_STRING or az login",
    "sftp": "~/.ssh keys or the ssh agent (key_filename=PATH names a key file)",
}


def is_url(location: str) -> bool:
    """Whether ``location`` is a URL (``scheme://...``) rather than a folder."""
    head, sep, _ = location.partition("://")
    return bool(sep) and head.replace("+", "").replace("-", "").isalnum()


def scrubbed(location: str) -> str:
    """``location`` fit to show: any password in it replaced by ``***``."""
    if not is_url(location):
        return location
    try:
        parts = urlsplit(location)
        if parts.password is None:
            return location
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return location.partition("://")[0] + "://***"


def parse_options(pairs: Iterable[str]) -> dict[str, str]:
    """``KEY=VALUE`` settings (``--data-option``) as a dict; BadInput for a malformed one."""
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(
                f"bad --data-option '{pair[:80]}': give KEY=VALUE, e.g. endpoint_url=http://host:9000"
            )
        options[key] = value
    return options


def storage_options(location: str, options: Mapping[str, str]) -> dict[str, object]:
    """The keyword arguments for the filesystem of ``location``, checked.

    BadInput for a password in the URL, an option that names a secret, or a
    library that is not installed (the message names the extra to install).
    """
    scheme = location.partition("://")[0].lower()
    shown = scrubbed(location)
    module, extra = EXTRAS.get(scheme, ("fsspec", ""))
    where = _WHERE.get(extra, "the library's own environment or files")
    if shown != location:
        raise BadInput(
            f"the datastore URL {shown} has a password in it: take it out and give it "
            f"through {where}"
        )
    for key in options:
        name = key.lower()
        if name in _SECRET_NAMES or any(word in name for word in _SECRET_WORDS):
            raise BadInput(
                f"--data-option {key} is a secret: a command line is no place for it; "
                f"give it through {where}"
            )
    missing = [m for m in ("fsspec", module) if importlib.util.find_spec(m) is None]
    if missing:
        install = f"pip install 'shoal[{extra}]'" if extra else f"pip install {missing[-1]}"
        raise BadInput(f"the datastore {shown} needs {missing[-1]}: {install}")
    kwargs: dict[str, object] = {key: _value(value) for key, value in options.items()}
    if extra == "s3":
        region = kwargs.pop("region", None) or kwargs.pop("region_name", None)
        if region is not None:
            client = dict(_mapping(kwargs.get("client_kwargs")))
            client["region_name"] = region
            kwargs["client_kwargs"] = client
    if extra in ("s3", "gcs", "azure"):
        # Every look at the bucket asks the bucket: another boss, or `shoal data`, writes too.
        kwargs.setdefault("use_listings_cache", False)
    return kwargs


def _value(text: str) -> object:
    """An option's value as the library wants it: a bool or a number where it is one."""
    lowered = text.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    if text.isdigit():
        return int(text)
    return text


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}

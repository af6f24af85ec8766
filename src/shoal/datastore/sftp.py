"""SFTP with the host's key checked, as ssh checks it.

fsspec's SFTP filesystem accepts any host key it is shown, so a machine in
the middle could take the boss's outputs and hand it forged inputs.
:class:`CheckedSFTPFileSystem` connects only to a host whose key is in the
known hosts: the user's (``~/.ssh/known_hosts``, ``known_hosts2``) and the
system's (``/etc/ssh/ssh_known_hosts``, ``ssh_known_hosts2``), or only the
file ``--data-option known_hosts=FILE`` names. An unknown key and a changed
one are refused (BadInput) with the key's fingerprint and the way to add it.
There is no option to accept an unknown key: a boss runs unattended, so the
first connection is the one nobody would check; ``ssh-keyscan`` adds a key
after a person has compared its fingerprint.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import paramiko
from fsspec.implementations.sftp import SFTPFileSystem

from shoal.exceptions import BadInput

__all__ = ["KNOWN_HOSTS", "CheckedSFTPFileSystem", "open_sftp"]

# Where ssh looks for host keys (its UserKnownHostsFile and GlobalKnownHostsFile).
KNOWN_HOSTS = (
    "~/.ssh/known_hosts",
    "~/.ssh/known_hosts2",
    "/etc/ssh/ssh_known_hosts",
    "/etc/ssh/ssh_known_hosts2",
)


def open_sftp(location: str, kwargs: dict[str, object]) -> tuple[CheckedSFTPFileSystem, str]:
    """The filesystem of an ``sftp://`` (or ``ssh://``) URL and its path, host key checked."""
    options = CheckedSFTPFileSystem._get_kwargs_from_urls(location)
    options.update(kwargs)
    fs = CheckedSFTPFileSystem(**options)
    return fs, str(fs._strip_protocol(location))


class CheckedSFTPFileSystem(SFTPFileSystem):  # type: ignore[misc]  # fsspec ships no types
    """fsspec's SFTP filesystem, connecting only to a host whose key is known.

    ``known_hosts``: the one file of known hosts to use instead of ssh's.
    """

    def __init__(self, host: str, known_hosts: str | None = None, **ssh_kwargs: Any) -> None:
        self.known_hosts = os.path.expanduser(str(known_hosts)) if known_hosts else None
        super().__init__(host, **ssh_kwargs)

    def _connect(self) -> None:
        """Connect as fsspec does, but with the known hosts loaded and unknown keys refused."""
        client = paramiko.SSHClient()
        files = self._load_known_hosts(client)
        port = int(self.ssh_kwargs.get("port") or 22)
        client.set_missing_host_key_policy(_RefuseUnknown(self.host, port, files))
        try:
            client.connect(self.host, **self.ssh_kwargs)
        except paramiko.BadHostKeyException as e:
            client.close()
            raise BadInput(_changed(self.host, port, e.key, e.expected_key, files)) from None
        except BaseException:
            client.close()
            raise
        self.client = client
        self.ftp = client.open_sftp()

    def _load_known_hosts(self, client: paramiko.SSHClient) -> list[str]:
        """Load the known hosts into ``client``; the files they came from, as given."""
        if self.known_hosts is not None:
            try:
                client.load_system_host_keys(self.known_hosts)
            except OSError as e:
                raise BadInput(
                    f"--data-option known_hosts={self.known_hosts}: cannot be read "
                    f"({e.strerror or e}); give a file of known hosts as ssh writes it"
                ) from None
            return [self.known_hosts]
        loaded = []
        for name in KNOWN_HOSTS:
            path = os.path.expanduser(name)
            if os.path.isfile(path):
                try:
                    client.load_system_host_keys(path)
                except OSError:  # one we may not read: ssh would pass it by too
                    continue
                loaded.append(name)
        return loaded


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Refuse a host none of the known hosts names, saying how to add it."""

    def __init__(self, host: str, port: int, files: list[str]) -> None:
        self.host = host
        self.port = port
        self.files = files

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        # ``hostname`` is the known hosts' name for it (``[host]:port``): show the host as given.
        looked = ", ".join(self.files) if self.files else "the known hosts (there are none)"
        target = self.files[0] if len(self.files) == 1 else "~/.ssh/known_hosts"
        raise BadInput(
            f"the SFTP host {_named(self.host, self.port)} is not known: its key "
            f"{_fingerprint(key)} is not in {looked}; check that fingerprint with the "
            f"host's administrator, then run `ssh-keyscan -p {self.port} {self.host} >> "
            f"{target}` (or give --data-option known_hosts=FILE)"
        )


def _changed(host: str, port: int, key: Any, expected: Any, files: list[str]) -> str:
    """The line refusing a host whose key is not the one its known hosts give."""
    entry = host if port == 22 else f"[{host}]:{port}"
    target = files[0] if len(files) == 1 else "~/.ssh/known_hosts"
    return (
        f"the SFTP host {_named(host, port)} has changed its key: it shows "
        f"{_fingerprint(key)}, the known hosts ({', '.join(files)}) have "
        f"{_fingerprint(expected)}; another machine may be in the middle: if the host's key "
        f"was really replaced, check the new fingerprint with its administrator, then run "
        f"`ssh-keygen -R '{entry}' -f {target}` and `ssh-keyscan -p {port} {host} >> {target}`"
    )


def _named(host: str, port: int) -> str:
    return host if port == 22 else f"{host} port {port}"


def _fingerprint(key: Any) -> str:
    """A key's type and SHA256 fingerprint, as ssh shows them (``ssh-ed25519 SHA256:...``)."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"

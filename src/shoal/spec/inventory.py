"""Host inventories (``hosts.yaml``): the ssh hosts that become workers.

::

    hosts:
      - name: node1
        address: 10.0.0.5        # or an alias from ~/.ssh/config
        user: alice
        port: 22
        identity: ~/.ssh/id_ed25519
        slots: 4                 # tasks this host runs at once
        labels: {gpu: true}
        python: python3
        ssh_options: ["-o", "ProxyJump=bastion"]
    defaults: {user: alice, slots: 2}

Only ``address`` is required (``name`` defaults to it). Fields left out are
left to ssh and the user's ``~/.ssh/config``. Every mistake is reported as
one line naming the file, the line and the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.exceptions import SpecError
from shoal.spec.bounds import Fail
from shoal.spec.fields import suggest
from shoal.spec.lines import line_of, parse_document

__all__ = ["Host", "Inventory", "load", "parse_text"]

HOST_FIELDS = (
    "name",
    "address",
    "user",
    "port",
    "identity",
    "slots",
    "labels",
    "python",
    "ssh_options",
)
TOP_FIELDS = ("hosts", "defaults")


@dataclass(frozen=True)
class Host:
    """One ssh host of an inventory."""

    name: str
    address: str
    user: str | None = None
    port: int | None = None
    identity: str | None = None
    slots: int = 1
    labels: dict[str, Any] = field(default_factory=dict)
    python: str = "python3"
    ssh_options: tuple[str, ...] = ()
    line: int | None = None

    @property
    def destination(self) -> str:
        """What ssh is told to connect to: ``user@address`` or the address alone."""
        return f"{self.user}@{self.address}" if self.user else self.address


@dataclass(frozen=True)
class Inventory:
    hosts: tuple[Host, ...]
    path: str

    def find(self, ref: str) -> Host:
        """A host by its index (from 0) or its name."""
        if ref.isdigit() and int(ref) < len(self.hosts):
            return self.hosts[int(ref)]
        for h in self.hosts:
            if h.name == ref:
                return h
        names = ", ".join(h.name for h in self.hosts)
        raise SpecError(f"no host '{ref}' in the inventory (hosts: {names})", path=self.path)


def load(path: str | Path) -> Inventory:
    """Read and check the inventory at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such inventory file (check the path)", path=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot be read: {e}", path=str(path)) from None
    return parse_text(text, path=str(path))


def parse_text(text: str, *, path: str = "<hosts>") -> Inventory:
    """Check an inventory given as text; ``path`` names it in messages."""
    data = parse_document(text, path)

    def error(message: str, line: int | None = None, host: str | None = None) -> SpecError:
        return SpecError(message, path=path, line=line, task=host, kind="host")

    if not isinstance(data, dict):
        raise error("an inventory is a mapping with a 'hosts' list", line_of(data))
    for key in data:
        if key not in TOP_FIELDS:
            raise error(f"unknown field '{key}'{suggest(key, TOP_FIELDS)}", line_of(data, key))
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise error("'defaults' must be a mapping of host fields", line_of(data, "defaults"))
    for key in defaults:
        if key not in HOST_FIELDS or key in ("name", "address"):
            raise error(
                f"unknown default '{key}'{suggest(key, HOST_FIELDS[2:])}", line_of(defaults, key)
            )
    entries = data.get("hosts")
    if not isinstance(entries, list) or not entries:
        raise error(
            "'hosts' must be a non-empty list, e.g. hosts: [{address: node1}]",
            line_of(data, "hosts"),
        )
    hosts: list[Host] = []
    seen: dict[str, int | None] = {}
    for i, raw in enumerate(entries):
        if isinstance(raw, str):
            raw_fields: dict[str, Any] = {"address": raw}
            line = line_of(data, "hosts")
        elif isinstance(raw, dict):
            raw_fields = raw
            line = line_of(raw)
        else:
            raise error(f"host #{i + 1} must be a mapping or an address", line_of(data, "hosts"))
        label = str(raw_fields.get("name") or raw_fields.get("address") or f"#{i + 1}")
        for key in raw_fields:
            if key not in HOST_FIELDS:
                raise error(
                    f"unknown field '{key}'{suggest(key, HOST_FIELDS)}", line_of(raw, key), label
                )
        hosts.append(_host({**defaults, **raw_fields}, raw, line, label, seen, error))
    return Inventory(hosts=tuple(hosts), path=path)


def _host(
    f: dict[str, Any],
    raw: Any,
    line: int | None,
    label: str,
    seen: dict[str, int | None],
    error: Fail,
) -> Host:
    """One host from its fields (defaults under the entry's own); ``seen``: names so far."""

    def where(key: str) -> int | None:
        return line_of(raw, key) or line

    address = f.get("address")
    if not isinstance(address, str) or not address.strip():
        raise error("has no 'address' (an IP, a host name or an ssh alias)", line, label)
    name = f.get("name", address)
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise error("'name' must be a word without spaces", where("name"), label)
    if name in seen:
        raise error(f"duplicate host name (first at line {seen[name]})", line, name)
    seen[name] = line
    user = f.get("user")
    if user is not None and (not isinstance(user, str) or not user):
        raise error("'user' must be a user name", where("user"), name)
    port = f.get("port")
    if port is not None and (
        not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536
    ):
        raise error("'port' must be a number from 1 to 65535", where("port"), name)
    identity = f.get("identity")
    if identity is not None and (not isinstance(identity, str) or not identity):
        raise error("'identity' must be the path of a key file", where("identity"), name)
    slots = f.get("slots", 1)
    if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
        raise error("'slots' must be a whole number of at least 1", where("slots"), name)
    labels = f.get("labels", {})
    if isinstance(labels, list) and all(isinstance(x, str) for x in labels):
        labels = {x: True for x in labels}
    if not isinstance(labels, dict):
        raise error("'labels' must be a mapping, e.g. {gpu: true}", where("labels"), name)
    python = f.get("python", "python3")
    if not isinstance(python, str) or not python:
        raise error("'python' must be the remote Python command", where("python"), name)
    options = f.get("ssh_options", [])
    if isinstance(options, str):
        options = options.split()
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise error(
            "'ssh_options' must be a list of ssh arguments, e.g. ['-o', 'ProxyJump=bastion']",
            where("ssh_options"),
            name,
        )
    return Host(
        name=name,
        address=address.strip(),
        user=user,
        port=port,
        identity=str(Path(identity).expanduser()) if identity else None,
        slots=slots,
        labels=dict(labels),
        python=python,
        ssh_options=tuple(options),
        line=line,
    )

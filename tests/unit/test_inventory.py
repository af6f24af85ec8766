"""Host inventories: what is read, and one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.exceptions import SpecError
from shoal.spec import inventory

FULL = """\
hosts:
  - name: node1
    address: 10.0.0.5
    user: alice
    port: 2222
    identity: ~/.ssh/id_ed25519
    slots: 4
    labels: {gpu: true}
    python: python3.11
    ssh_options: ["-o", "ProxyJump=bastion"]
  - address: node2
  - node3
defaults: {user: bob, slots: 2}
"""


def test_fields_defaults_and_aliases() -> None:
    inv = inventory.parse_text(FULL, path="hosts.yaml")
    one, two, three = inv.hosts
    assert one.name == "node1" and one.destination == "alice@10.0.0.5"
    assert one.port == 2222 and one.slots == 4 and one.labels == {"gpu": True}
    assert one.identity == str(Path.home() / ".ssh" / "id_ed25519")
    assert one.python == "python3.11"
    assert one.ssh_options == ("-o", "ProxyJump=bastion")
    # Defaults fill what a host leaves out; a bare string is an address.
    assert (two.name, two.user, two.slots, two.port) == ("node2", "bob", 2, None)
    assert (three.name, three.destination) == ("node3", "bob@node3")
    assert inv.find("1") is two and inv.find("node3") is three


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hosts: []\n", "hosts.yaml:1: 'hosts' must be a non-empty list"),
        ("hots: [a]\n", "hosts.yaml:1: unknown field 'hots' (did you mean 'hosts'?)"),
        (
            "hosts:\n  - address: a\n    slot: 2\n",
            "hosts.yaml:3: host 'a': unknown field 'slot' (did you mean 'slots'?)",
        ),
        (
            "hosts:\n  - address: a\n    slots: 0\n",
            "hosts.yaml:3: host 'a': 'slots' must be a whole number of at least 1",
        ),
        (
            "hosts:\n  - address: a\n    port: 70000\n",
            "hosts.yaml:3: host 'a': 'port' must be a number from 1 to 65535",
        ),
        ("hosts:\n  - name: x\n", "hosts.yaml:2: host 'x': has no 'address'"),
        (
            "hosts:\n  - address: a\n  - address: a\n",
            "hosts.yaml:3: host 'a': duplicate host name (first at line 2)",
        ),
        (
            "hosts:\n  - address: a\n    ssh_options: {x: 1}\n",
            "hosts.yaml:3: host 'a': 'ssh_options' must be a list of ssh arguments",
        ),
        ("hosts: [a]\ndefaults: {address: b}\n", "hosts.yaml:2: unknown default 'address'"),
        ("hosts:\n  - address: [a\n", "hosts.yaml:3: invalid YAML"),
    ],
)
def test_mistakes_are_one_line_with_file_line_and_host(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        inventory.parse_text(text, path="hosts.yaml")
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_a_missing_file_and_an_unknown_host(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such inventory file"):
        inventory.load(tmp_path / "nope.yaml")
    (tmp_path / "h.yaml").write_text("hosts: [a, b]\n")
    inv = inventory.load(tmp_path / "h.yaml")
    with pytest.raises(SpecError, match=r"no host 'c' in the inventory \(hosts: a, b\)"):
        inv.find("c")

"""Pool files: what is read, one clear line for every mistake, and the pools remembered."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from shoal.cli import render
from shoal.exceptions import BadInput, SpecError
from shoal.launch import providers
from shoal.launch.contract import FieldSpec, Machine, Pool, ProviderSchema, Site
from shoal.launch.local import LocalProvider
from shoal.launch.pools import find_pool, pool_hosts, remember, remembered
from shoal.launch.ssh.provider import SshProvider
from shoal.spec import pools


def _credentials(fields: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    if environ.get("FAKE_CLOUD_TOKEN"):
        return None
    return "no credentials for the fake cloud: set FAKE_CLOUD_TOKEN"


FAKE = ProviderSchema(
    fields={
        "region": FieldSpec("str", required=True, help="where the machines run"),
        "size": FieldSpec("str"),
        "spot": FieldSpec("bool"),
        "disk": FieldSpec("int"),
        "bid": FieldSpec("number"),
        "security_groups": FieldSpec("list"),
        "tags": FieldSpec("map"),
        "address": FieldSpec("str", choices=("public", "private")),
    },
    rented=True,
    credentials=_credentials,
)
ENV = {"FAKE_CLOUD_TOKEN": "s3cr3t-t0ken"}


@pytest.fixture(autouse=True)
def fake_cloud(monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider 'fake' with a schema of its own, known for the test only."""
    monkeypatch.setattr(providers, "_KNOWN", dict(providers._KNOWN))
    monkeypatch.setattr(providers, "_SCHEMAS", dict(providers._SCHEMAS))
    providers.register("fake", LocalProvider, FAKE)


def parse(text: str, environ: Mapping[str, str] = ENV, base: Path | None = None) -> pools.PoolFile:
    return pools.parse_text(text, path="pools.yaml", environ=environ, base=base)


FULL = """\
pools:
  - name: cpu
    provider: fake
    count: 4
    slots: 8
    labels: {big: true, zone: a}
    region: eu-west-1
    size: c6i.2xlarge
    spot: true
    disk: 100
    bid: 0.25
    security_groups: [sg-1, sg-2]
    tags: {team: {name: x}}
    address: private
  - name: burst
    provider: fake
    min: 0
    max: 50
    labels: [gpu, fast]
    idle_stop: 90s
    region: us-east-1
  - name: always
    provider: fake
    max: 2
    idle_stop: never
    region: us-east-1
  - name: here
    provider: local
    count: 2
"""


def test_a_full_pool_file_gives_each_pool_its_fields() -> None:
    cpu, burst, always, here = parse(FULL).pools
    assert (cpu.name, cpu.provider, cpu.count, cpu.slots) == ("cpu", "fake", 4, 8)
    assert cpu.labels == {"big": True, "zone": "a"}
    assert cpu.fields == {
        "region": "eu-west-1",
        "size": "c6i.2xlarge",
        "spot": True,
        "disk": 100,
        "bid": 0.25,
        "security_groups": ["sg-1", "sg-2"],
        "tags": {"team": {"name": "x"}},
        "address": "private",
    }
    assert type(cpu.fields["tags"]) is dict  # plain JSON data, not the reader's mappings
    # A rented machine stops after 10 idle minutes unless the pool says otherwise.
    assert cpu.idle_stop == 600.0
    assert (burst.count, burst.min, burst.max, burst.idle_stop) == (None, 0, 50, 90.0)
    assert burst.labels == {"gpu": True, "fast": True}
    assert (always.min, always.max, always.idle_stop) == (0, 2, None)  # never
    # A machine shoal does not rent is never stopped for idling unless told.
    assert (here.provider, here.count, here.idle_stop, here.fields) == ("local", 2, None, {})


POOL = "pools:\n  - name: cpu\n    provider: fake\n    region: r\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "pools.yaml: a pool file is a mapping with a 'pools' list"),
        ("pools: []\n", "pools.yaml:1: 'pools' must be a non-empty list"),
        ("pool: []\n", "pools.yaml:1: unknown field 'pool' (did you mean 'pools'?)"),
        ("pools:\n  - cpu\n", "pools.yaml:1: pool #1 must be a mapping of fields"),
        (
            "pools:\n  - provider: local\n    count: 1\n",
            "pools.yaml:2: pool '#1': has no 'name' (a word naming the pool, e.g. cpu)",
        ),
        (
            "pools:\n  - nmae: cpu\n    provider: local\n",
            "pools.yaml:2: pool '#1': unknown field 'nmae' (did you mean 'name'?)",
        ),
        (
            "pools:\n  - name: my pool\n    provider: local\n",
            "pools.yaml:2: pool '#1': 'name' must be a word of letters, digits, '_' and '-'",
        ),
        (
            "pools:\n  - name: a\n    provider: local\n    count: 1\n"
            "  - name: a\n    provider: local\n    count: 2\n",
            "pools.yaml:5: pool 'a': duplicate pool name (first at line 2)",
        ),
        (
            "pools:\n  - name: cpu\n    count: 1\n",
            "pools.yaml:2: pool 'cpu': has no 'provider' (known: aws, azure, digitalocean, docker, fake, gce, local, opennebula, openstack, slurm, ssh, vagrant)",
        ),
        (
            "pools:\n  - name: cpu\n    provider: awz\n",
            "pools.yaml:3: pool 'cpu': no provider called 'awz' (known: aws, azure, digitalocean, docker, fake, gce, local, opennebula, openstack, slurm, ssh, vagrant)",
        ),
        (
            POOL + "    count: 1\n    regoin: eu\n",
            "pools.yaml:6: pool 'cpu': unknown field 'regoin' (did you mean 'region'?)",
        ),
        (
            "pools:\n  - name: cpu\n    provider: local\n    count: 1\n    region: eu\n",
            "pools.yaml:5: pool 'cpu': unknown field 'region' (known fields: name, provider",
        ),
        (
            POOL + "    count: 2\n    max: 3\n",
            "pools.yaml:5: pool 'cpu': give 'count' (a fixed size) or 'min' and 'max'",
        ),
        (POOL + "    count: 0\n", "pools.yaml:5: pool 'cpu': 'count' must be at least 1, not 0"),
        (
            POOL + "    count: two\n",
            "pools.yaml:5: pool 'cpu': 'count' must be a whole number, not 'two'",
        ),
        (
            POOL + "    min: 3\n    max: 2\n",
            "pools.yaml:5: pool 'cpu': 'min' (3) is more than 'max'",
        ),
        (POOL + "    min: 3\n", "pools.yaml:5: pool 'cpu': 'min' needs a 'max'"),
        (POOL + "    max: 0\n", "pools.yaml:5: pool 'cpu': 'max' must be at least 1, not 0"),
        (
            POOL + "    count: 20000\n",
            "pools.yaml:5: pool 'cpu': 'count' must be at most 10,000, not 20,000",
        ),
        (POOL, "pools.yaml:2: pool 'cpu': says not how many machines: give 'count: N'"),
        (
            POOL + "    count: 1\n    slots: 0\n",
            "pools.yaml:6: pool 'cpu': 'slots' must be at least 1, not 0",
        ),
        (POOL + "    count: 1\n    labels: 3\n", "pools.yaml:6: pool 'cpu': 'labels' must be a"),
        (
            POOL + "    count: 1\n    labels: [gpu, big box]\n",
            "pools.yaml:6: pool 'cpu': 'labels' as a list must hold words",
        ),
        (
            POOL + "    count: 1\n    idle_stop: soon\n",
            "pools.yaml:6: pool 'cpu': 'idle_stop': bad duration 'soon'",
        ),
        (
            POOL + "    count: 1\n    idle_stop: 0\n",
            "pools.yaml:6: pool 'cpu': 'idle_stop': bad duration 0: it must be more than zero; "
            "or 'never'",
        ),
        (
            "pools:\n  - name: cpu\n    provider: fake\n    count: 1\n",
            "pools.yaml:2: pool 'cpu': needs 'region' (where the machines run)",
        ),
        (
            POOL + "    count: 1\n    spot: yes please\n",
            "pools.yaml:6: pool 'cpu': 'spot' must be true or false",
        ),
        (
            POOL + "    count: 1\n    disk: 1.5\n",
            "pools.yaml:6: pool 'cpu': 'disk' must be a whole",
        ),
        (
            POOL + "    count: 1\n    bid: cheap\n",
            "pools.yaml:6: pool 'cpu': 'bid' must be a number",
        ),
        (
            POOL + "    count: 1\n    security_groups: sg-1\n",
            "pools.yaml:6: pool 'cpu': 'security_groups' must be a list of strings",
        ),
        (
            POOL + "    count: 1\n    tags: [a]\n",
            "pools.yaml:6: pool 'cpu': 'tags' must be a mapping",
        ),
        (
            POOL + "    count: 1\n    address: both\n",
            "pools.yaml:6: pool 'cpu': 'address' must be one of public, private, not 'both'",
        ),
        (
            "pools:\n  - name: edge\n    provider: ssh\n    inventory: nowhere.yaml\n",
            "pools.yaml:4: pool 'edge': no inventory at 'nowhere.yaml' (the path is relative to "
            "the pool file's folder)",
        ),
        (
            "pools:\n  - name: edge\n    provider: ssh\n",
            "pools.yaml:2: pool 'edge': needs 'inventory' (a hosts inventory, e.g. hosts.yaml)",
        ),
    ],
)
def test_each_mistake_is_one_line_with_its_line_and_pool(text: str, message: str) -> None:
    with pytest.raises(SpecError) as e:
        parse(text)
    said = str(e.value)
    assert said.startswith(message), said
    assert "\n" not in said
    assert isinstance(e.value, BadInput) and e.value.exit_code == 2


def test_a_missing_credential_is_named_at_the_pools_provider_line() -> None:
    text = "pools:\n  - name: a\n    provider: local\n    count: 1\n" + POOL[7:] + "    count: 1\n"
    with pytest.raises(SpecError) as e:
        parse(text, environ={})
    assert str(e.value) == (
        "pools.yaml:6: pool 'cpu': no credentials for the fake cloud: set FAKE_CLOUD_TOKEN"
    )
    assert parse(text, environ=ENV).pools[1].fields == {"region": "r"}


def _inventory(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hosts.yaml"
    path.write_text(
        "hosts:\n"
        "  - {name: n1, address: 10.0.0.1, slots: 4, labels: {disk: ssd}}\n"
        "  - {name: n2, address: 10.0.0.2}\n"
        "  - {name: n3, address: 10.0.0.3}\n"
    )
    return path


def test_an_ssh_pool_is_its_inventorys_hosts_sized_and_labelled_as_the_pool_says(
    tmp_path: Path,
) -> None:
    inv = _inventory(tmp_path / "inv")
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "pools.yaml"
    path.write_text(
        "pools:\n"
        "  - {name: all, provider: ssh, inventory: ../inv/hosts.yaml}\n"
        "  - name: edge\n"
        "    provider: ssh\n"
        "    inventory: ../inv/hosts.yaml\n"
        "    count: 2\n"
        "    slots: 3\n"
        "    labels: [edge]\n"
    )
    every, edge = pools.load(path).pools  # relative to the pool file, wherever shoal runs
    assert every.count == 3 and every.fields["inventory"] == str(inv.resolve())
    machines = SshProvider(Site(tmp_path / "state")).plan(edge, edge.size)
    assert [(m.name, m.pool, m.slots) for m in machines] == [("n1", "edge", 3), ("n2", "edge", 3)]
    assert machines[0].labels == {"edge": True, "disk": "ssd"}
    assert machines[1].labels == {"edge": True}


def test_an_ssh_pool_larger_than_its_inventory_is_refused(tmp_path: Path) -> None:
    _inventory(tmp_path)
    text = "pools:\n  - name: edge\n    provider: ssh\n    inventory: hosts.yaml\n    max: 5\n"
    with pytest.raises(SpecError) as e:
        parse(text, base=tmp_path)
    assert str(e.value) == "pools.yaml:5: pool 'edge': 'max' is 5 but the inventory has 3 hosts"


def test_a_mistake_in_the_inventory_of_an_ssh_pool_names_the_inventorys_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "hosts.yaml").write_text("hosts:\n  - address: a\n    slot: 2\n")
    with pytest.raises(SpecError) as e:
        pools.load(_pool_file(tmp_path, "hosts.yaml"))
    assert str(e.value) == (
        f"{tmp_path / 'hosts.yaml'}:3: host 'a': unknown field 'slot' (did you mean 'slots'?)"
    )


def _pool_file(folder: Path, inventory: str) -> Path:
    path = folder / "pools.yaml"
    path.write_text(f"pools:\n  - name: edge\n    provider: ssh\n    inventory: {inventory}\n")
    return path


def test_a_pool_file_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        pools.load(tmp_path / "nope.yaml")
    assert str(e.value) == f"{tmp_path / 'nope.yaml'}: no such pool file (check the path)"


# -- remembered pools and --pool NAME ----------------------------------------


def test_pools_are_remembered_by_name_privately_and_without_credentials(tmp_path: Path) -> None:
    site = Site(tmp_path / "state")
    assert remembered(site) == {}
    cpu, burst, _, here = parse(FULL).pools
    remember(site, [cpu, here])
    remember(site, [burst, Pool(name="here", provider="local", count=5)])
    got = remembered(site)
    assert list(got) == ["cpu", "here", "burst"]
    assert got["cpu"] == cpu and got["burst"] == burst
    assert got["here"].count == 5  # the latest of that name
    file = site.root / "pools.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert ENV["FAKE_CLOUD_TOKEN"] not in file.read_text()


def test_pool_name_finds_the_live_machines_of_a_remembered_ssh_pool_in_order(
    tmp_path: Path,
) -> None:
    _inventory(tmp_path)
    site = Site(tmp_path / "state")
    (edge,) = pools.load(_pool_file(tmp_path, "hosts.yaml")).pools
    remember(site, [edge, Pool(name="cpu", provider="local", count=1)])
    machines = [
        Machine(name="n3", pool="edge", provider="ssh", state="running"),
        Machine(name="n1", pool="edge", provider="ssh", state="stopped"),
        Machine(name="cpu-1", pool="cpu", provider="local", state="running"),
        Machine(name="n2", pool="edge", provider="ssh", state="starting"),
    ]
    hosts = pool_hosts(site, find_pool(site, "edge"), machines)
    assert [(h.name, h.address) for h in hosts] == [("n3", "10.0.0.3"), ("n2", "10.0.0.2")]

    with pytest.raises(BadInput) as e:
        find_pool(site, "egde")
    assert str(e.value) == "no pool called 'egde' (pools brought up here: edge, cpu)"
    with pytest.raises(BadInput) as e:
        pool_hosts(site, find_pool(site, "cpu"), machines)
    assert str(e.value) == "pool cpu's machines are not reached over ssh"
    with pytest.raises(BadInput) as e:
        pool_hosts(site, edge, machines[1:2])
    assert str(e.value).startswith("pool edge has no live machines")
    with pytest.raises(BadInput) as e:
        find_pool(Site(tmp_path / "other"), "edge")
    assert "none was brought up for" in str(e.value) and "shoal up --pool FILE" in str(e.value)


# -- uptime and cost ---------------------------------------------------------


def test_uptime_runs_from_the_request_to_now_or_to_the_end_and_cost_follows_the_price() -> None:
    live = Machine(
        name="a",
        pool="cpu",
        provider="fake",
        state="running",
        requested=1000.0,
        since=1100.0,
        price=0.5,
    )
    ended = live.replace(state="stopped", since=1000.0 + 1800)
    assert live.uptime(now=1000.0 + 3600) == 3600.0 and live.cost(now=1000.0 + 3600) == 0.5
    assert ended.uptime(now=9999.0) == 1800.0 and ended.cost(now=9999.0) == 0.25
    assert live.replace(price=None).cost(now=5000.0) is None


def test_the_pools_line_counts_live_machines_by_pool_and_adds_the_cost() -> None:
    rows = [
        {"pool": "cpu", "state": "running", "cost": 1.0},
        {"pool": "cpu", "state": "running", "cost": 0.25},
        {"pool": "hpc", "state": "stopped", "cost": 0.02},
        {"pool": "cpu", "state": "starting", "cost": None},
        {"pool": "cpu", "state": "failed", "cost": None},
    ]
    assert render.pools_line(rows).plain == "pools: cpu 2 running 1 starting · hpc 0 · $1.27 so far"
    assert render.pools_line(rows[3:]).plain == "pools: cpu 1 starting"

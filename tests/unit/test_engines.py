"""The docker and vagrant providers' own logic: what they write, parse and refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal.exceptions import BadInput, ShoalError
from shoal.launch.contract import BossAccess, Pool
from shoal.launch.docker import Engine, _said, agent_url
from shoal.launch.vagrant import _error_line, host_of, parse_ssh_config, vagrantfile
from shoal.spec import pools

BOSS = BossAccess(url="http://127.0.0.1:8642", token=lambda: "t")


def docker_pool(**fields: object) -> Pool:
    return Pool(name="box", provider="docker", count=1, fields={"image": "python:3.12", **fields})


def test_a_docker_pool_file_is_read_and_needs_an_image(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n  - name: box\n    provider: docker\n    count: 3\n    image: python:3.12-slim\n"
        "    cpus: 1.5\n    memory: 2g\n    options: [--gpus, all]\n"
    )
    (box,) = pools.load(path).pools
    assert box.fields == {
        "image": "python:3.12-slim",
        "cpus": 1.5,
        "memory": "2g",
        "options": ["--gpus", "all"],
    }
    assert box.idle_stop is None  # not rented: kept until shoal down
    path.write_text("pools:\n  - name: box\n    provider: docker\n    count: 3\n")
    with pytest.raises(BadInput) as e:
        pools.load(path)
    assert str(e.value) == (
        f"{path}:2: pool 'box': needs 'image' (the image to run; it needs python3)"
    )


def test_agents_reach_the_boss_by_its_loopback_url_only_with_host_networking_on_this_machine() -> (
    None
):
    local = Engine(None)
    assert agent_url(docker_pool(), BOSS, local) == BOSS.url
    assert agent_url(docker_pool(network="host"), BOSS, Engine("unix:///run/d.sock")) == BOSS.url
    with pytest.raises(ShoalError) as e:
        agent_url(docker_pool(network="bridge"), BOSS, local)
    assert str(e.value) == (
        "a container on network bridge cannot reach the boss at http://127.0.0.1:8642 "
        "(this machine's loopback): give the pool network: host, or a boss_url"
    )
    with pytest.raises(ShoalError) as e:
        agent_url(docker_pool(), BOSS, Engine("ssh://me@engine.example.org"))
    assert "the engine ssh://me@engine.example.org is another machine" in str(e.value)
    assert "give the pool a boss_url" in str(e.value)
    # A URL they reach, from the pool or from shoal up --boss-url, is taken as given.
    remote = Engine("tcp://10.1.2.3:2376")
    assert agent_url(docker_pool(boss_url="https://boss:8443"), BOSS, remote) == "https://boss:8443"
    direct = BossAccess(url=BOSS.url, token=BOSS.token, direct_url="http://10.0.0.1:8642")
    assert agent_url(docker_pool(network="bridge"), direct, local) == "http://10.0.0.1:8642"
    assert Engine("tcp://127.0.0.1:2375").is_local() and not remote.is_local()


def test_dockers_error_line_is_its_own_without_the_hint_after_it() -> None:
    said = (
        b"docker: Error response from daemon: No such image: shoal-lab/missing:1.\n"
        b"See 'docker run --help'.\n"
    )
    assert _said(said) == "No such image: shoal-lab/missing:1."
    assert _said(b"") == "docker failed"


def vagrant_pool(**fields: object) -> Pool:
    return Pool(name="vm", provider="vagrant", count=2, fields=fields)


def test_the_vagrantfile_has_the_pools_box_provider_and_sizes() -> None:
    text = vagrantfile(
        vagrant_pool(
            box="debian/bookworm64",
            vagrant_provider="libvirt",
            cpus=2,
            memory=2048,
            provider_options={"nested": True, "machine_type": 'q35 "#{x}"'},
        ),
        ["vm-1", "vm-2"],
    )
    assert text.splitlines()[2:] == [
        'Vagrant.configure("2") do |config|',
        '  config.vm.box = "debian/bookworm64"',
        '  config.vm.synced_folder ".", "/vagrant", disabled: true',
        '  config.vm.provider "libvirt" do |p|',
        "    p.nested = true",
        # Ruby interpolates "#{...}": never in a value shoal writes.
        '    p.machine_type = "q35 \\"\\#{x}\\""',
        "    p.cpus = 2",
        "    p.memory = 2048",
        "  end",
        '  ["vm-1", "vm-2"].each do |name|',
        "    config.vm.define name",
        "  end",
        "end",
    ]


def test_the_docker_provider_of_vagrant_gets_cpus_and_memory_as_docker_run_options() -> None:
    text = vagrantfile(
        vagrant_pool(
            vagrant_provider="docker",
            cpus=1,
            memory=512,
            provider_options={"image": "img:1", "create_args": ["--network=lab"]},
        ),
        ["vm-1"],
    )
    assert '    p.image = "img:1"' in text
    assert '    p.create_args = ["--network=lab", "--cpus=1", "--memory=512m"]' in text
    assert "p.cpus" not in text and "config.vm.box" not in text


def test_a_provider_option_that_is_no_setting_name_is_refused_in_one_line() -> None:
    with pytest.raises(BadInput) as e:
        vagrantfile(vagrant_pool(provider_options={"bad key": 1}), ["vm-1"])
    assert str(e.value) == (
        "pool vm: provider_options: 'bad key' is not a Vagrant provider setting "
        "(letters, digits and _)"
    )


SSH_CONFIG = """Host vm-1
  HostName 127.0.0.1
  User vagrant
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile "/home/me/my boxes/.vagrant/machines/vm-1/virtualbox/private_key"
  IdentityFile /home/me/.vagrant.d/insecure_private_key
  IdentitiesOnly yes
  LogLevel FATAL

Host vm-2
  HostName 192.168.121.7
  User vagrant
  Port 22
  IdentityFile /k2
"""


def test_ssh_config_becomes_the_hosts_shoal_drives_over_ssh() -> None:
    parsed = parse_ssh_config(SSH_CONFIG)
    assert list(parsed) == ["vm-1", "vm-2"]
    pool = Pool(name="vm", provider="vagrant", count=2, labels={"gpu": True})
    one = host_of("vm-1", parsed["vm-1"], pool, 4)
    assert (one.name, one.address, one.user, one.port, one.slots) == (
        "vm-1",
        "127.0.0.1",
        "vagrant",
        2200,
        4,
    )
    assert one.identity == "/home/me/my boxes/.vagrant/machines/vm-1/virtualbox/private_key"
    assert one.labels == {"gpu": True} and one.python == "python3"
    # Vagrant's own ssh options travel; its LogLevel FATAL would hide ssh's error lines.
    assert one.ssh_options == (
        "-ouserknownhostsfile=/dev/null",
        "-ostricthostkeychecking=no",
        "-opasswordauthentication=no",
        "-oidentitiesonly=yes",
        "-oIdentityFile=/home/me/.vagrant.d/insecure_private_key",
    )
    two = host_of("vm-2", parsed["vm-2"], pool, 0)
    assert (two.address, two.port, two.identity, two.ssh_options) == (
        "192.168.121.7",
        22,
        "/k2",
        (),
    )


def test_vagrants_error_is_told_in_its_first_sentence() -> None:
    out = "\n".join(
        [
            "1796049691,vm-1,action,up,start",
            "1796049700,,error-exit,Vagrant::Errors::VMBootTimeout,Timed out while waiting for "
            "the machine to boot. This means that\\nVagrant was unable to communicate"
            "%!(VAGRANT_COMMA) sorry.",
        ]
    )
    assert _error_line(out) == "Timed out while waiting for the machine to boot."
    assert _error_line("1,vm-1,action,up,end") is None
    # Where it says the reason is below, the reason's first sentence too.
    unusable = (
        "1,,error-exit,Vagrant::Errors::ProviderNotUsable,The provider 'virtualbox' that was "
        "requested to back the machine\\n'vm-1' is reporting that it isn't usable on this "
        "system. The\\nreason is shown below:\\n\\nVagrant could not detect VirtualBox! Make "
        "sure VirtualBox is properly installed.\\nVagrant uses the `VBoxManage` binary"
    )
    assert _error_line(unusable) == (
        "The provider 'virtualbox' that was requested to back the machine 'vm-1' is reporting "
        "that it isn't usable on this system: Vagrant could not detect VirtualBox!"
    )

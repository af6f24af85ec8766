"""The cloud lab itself: moto's EC2 instances are hosts one can ssh to, until they end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cloudlab import CloudLab, cloud_lab
from tests.conftest import alive
from tests.sshhosts import ip, needs_ssh_hosts

pytestmark = needs_ssh_hosts


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[CloudLab]:
    with cloud_lab(tmp_path / "cloud") as made:
        yield made


def run(lab: CloudLab, count: int, **extra: str) -> list[dict[str, str]]:
    """``count`` instances started in the lab's subnet: id and private address of each."""
    answer = lab.ec2.run_instances(
        ImageId=lab.image,
        MinCount=count,
        MaxCount=count,
        InstanceType=lab.size,
        SubnetId=lab.subnet,
        **extra,
    )
    return [{"id": i["InstanceId"], "addr": i["PrivateIpAddress"]} for i in answer["Instances"]]


def ssh_true(lab: CloudLab, addr: str, key: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    """What a user types: ``ssh -i KEY root@ADDR true``."""
    return subprocess.run(
        [
            *("ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no"),
            *("-o", f"UserKnownHostsFile={lab.known_hosts}", "-o", f"ConnectTimeout={timeout}"),
            *(f"root@{addr}", "true"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def routed(addr: str) -> bool:
    """Whether this machine would send a packet to ``addr`` anywhere (the blackhole: no)."""
    return subprocess.run(["ip", "route", "get", addr], capture_output=True).returncode == 0


def started_sleep(lab: CloudLab, addr: str) -> int:
    """A process left running on the host (as an agent would be): its PID."""
    done = lab.ssh(addr, "setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!")
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_each_instance_is_a_host_at_its_address_until_it_is_terminated(lab: CloudLab) -> None:
    started = run(lab, 2)
    hosts = lab.wait_hosts(2)
    assert {k: h.addr for k, h in hosts.items()} == {i["id"]: i["addr"] for i in started}
    for i in started:
        assert lab.cidr.startswith(i["addr"].rsplit(".", 1)[0] + ".")
        assert ssh_true(lab, i["addr"], lab.key, timeout=30).returncode == 0
        # Each host its own HOME, on this machine's filesystem.
        home = lab.ssh(i["addr"], "echo $HOME").stdout.strip()
        assert home == str(hosts[i["id"]].home) and Path(home).is_dir()
    assert hosts[started[0]["id"]].home != hosts[started[1]["id"]].home

    # An address of the subnet with no host: dropped here, never sent out; ssh says so soon.
    assert not routed(lab.unused_address())
    nobody = ssh_true(lab, lab.unused_address(), lab.key, timeout=2)
    assert nobody.returncode == 255 and "connect to host" in nobody.stderr

    gone, kept = started
    left_running = started_sleep(lab, gone["addr"])
    assert alive(left_running)
    lab.ec2.terminate_instances(InstanceIds=[gone["id"]])
    assert list(lab.wait_hosts(1)) == [kept["id"]]
    # The VM stopped: what ran there stopped too, and its address answers no more.
    assert not alive(left_running)
    assert not routed(gone["addr"])
    assert ssh_true(lab, gone["addr"], lab.key, timeout=2).returncode == 255
    assert ssh_true(lab, kept["addr"], lab.key, timeout=30).returncode == 0
    assert [i["InstanceId"] for i in lab.instances(states=("terminated",))] == [gone["id"]]


def test_a_killed_instance_vanishes_behind_the_back_of_whoever_started_it(
    lab: CloudLab,
) -> None:
    (victim,) = run(lab, 1)
    lab.wait_hosts(1)
    left_running = started_sleep(lab, victim["addr"])
    lab.kill(victim["id"])
    # At once, not at the watcher's next look.
    assert lab.hosts == {}
    assert not alive(left_running)
    assert [i["State"]["Name"] for i in lab.instances()] == ["terminated"]
    assert ssh_true(lab, victim["addr"], lab.key, timeout=2).returncode == 255


def test_a_host_takes_its_key_pair_and_a_stopped_instance_comes_back_with_its_home(
    tmp_path: Path, lab: CloudLab
) -> None:
    own = tmp_path / "id_own"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own)], check=True)
    lab.ec2.import_key_pair(KeyName="own", PublicKeyMaterial=own.with_suffix(".pub").read_bytes())
    (vm,) = run(lab, 1, KeyName="own", UserData="#!/bin/sh\necho armed\n")
    host = lab.wait_hosts(1)[vm["id"]]
    assert ssh_true(lab, vm["addr"], own, timeout=30).returncode == 0
    assert lab.user_data(vm["id"]) == "#!/bin/sh\necho armed\n"
    (host.home / "kept").write_text("on the disk")

    lab.ec2.stop_instances(InstanceIds=[vm["id"]])
    lab.wait_hosts(0)
    assert ssh_true(lab, vm["addr"], own, timeout=2).returncode == 255
    lab.ec2.start_instances(InstanceIds=[vm["id"]])
    back = lab.wait_hosts(1)[vm["id"]]
    assert lab.ssh(back.addr, "cat $HOME/kept").stdout == "on the disk"


LIST_NODES = """
import json, os, sys
from urllib.parse import urlsplit
from libcloud.compute.providers import get_driver
from libcloud.compute.types import Provider

endpoint = urlsplit(sys.argv[1])
driver = get_driver(Provider.EC2)(
    os.environ["AWS_ACCESS_KEY_ID"],
    os.environ["AWS_SECRET_ACCESS_KEY"],
    region=os.environ["AWS_DEFAULT_REGION"],
    host=endpoint.hostname,
    port=endpoint.port,
    secure=False,
    signature_version="4",
)
print(json.dumps({n.id: [n.state, n.private_ips] for n in driver.list_nodes()}))
"""


def test_libcloud_in_a_process_of_its_own_sees_the_instances(lab: CloudLab) -> None:
    started = run(lab, 2)
    lab.kill(started[1]["id"])
    # The environment a test gives shoal: the only way into `shoal up`'s keeper.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(lab.env())
    done = subprocess.run(
        [sys.executable, "-c", LIST_NODES, lab.endpoint],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        started[0]["id"]: ["running", [started[0]["addr"]]],
        started[1]["id"]: ["terminated", [started[1]["addr"]]],
    }


def test_the_lab_leaves_nothing_behind_when_the_test_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the test failed"), cloud_lab(tmp_path / "c") as lab:
        run(lab, 1)
        (host,) = lab.wait_hosts(1).values()
        assert host.sshd is not None
        sshd, moto, cidr = host.sshd.pid, lab.moto_pid, lab.cidr
        raise RuntimeError("the test failed")
    assert not alive(sshd) and not alive(moto)
    assert host.ns not in ip("netns", "list").split()
    assert host.veth not in ip("-o", "link", "show")
    assert ip("route", "show", "root", cidr) == ""  # no blackhole, no host's route

"""Machines that are Vagrant machines: Debian's vagrant with its docker provider, for real.

VirtualBox and libvirt cannot run here, so the Vagrant machines are
containers of Vagrant's docker provider on the Docker lab's dockerd
(tests/dockerlab.py), from the lab image with what a Vagrant box has: a
``vagrant`` user with Vagrant's insecure key and sudo, and sshd as the
container's command. The lab's dockerd sets up no network of this machine,
and Vagrant's docker provider finds a machine's ssh only on a port it
publishes (or on the default bridge's address): so the containers join a
bridge of the lab's own (no NAT, no firewall rule), and docker-proxy
publishes their ssh on 127.0.0.1, where Vagrant and shoal connect.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Procs, alive, shoal, shoal_json, start_boss, wait_for, write
from tests.dockerlab import BOX_IMAGE, DockerLab, box_image, docker_lab, needs_docker
from tests.needs import needs

pytestmark = [needs_docker, needs("vagrant", shutil.which("vagrant") is not None)]


@dataclass
class VagrantLab:
    docker: DockerLab
    network: str  # the lab bridge the machines join
    home: Path  # VAGRANT_HOME

    def env(self) -> dict[str, str]:
        return {**self.docker.env(), "VAGRANT_HOME": str(self.home)}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[VagrantLab]:
    with docker_lab(tmp_path / "docker") as made:
        box_image(made, tmp_path / "box")
        yield VagrantLab(made, made.bridge(), tmp_path / "vagrant-home")


def pool_file(lab: VagrantLab, path: Path, count: int) -> Path:
    """A vagrant pool on Vagrant's docker provider: the box image, sshd, the lab's bridge."""
    return write(
        path,
        "pools:\n"
        "  - name: vm\n"
        "    provider: vagrant\n"
        f"    count: {count}\n"
        "    slots: 1\n"
        "    vagrant_provider: docker\n"
        "    provider_options:\n"
        f"      image: {BOX_IMAGE}\n"
        "      has_ssh: true\n"
        "      cmd: [/usr/sbin/sshd, -D, -e]\n"
        f"      create_args: [--network={lab.network}]\n",
    )


def machines_of(lab: VagrantLab) -> list[dict[str, str]]:
    """The containers Vagrant made (its docker provider names them after the folder)."""
    return [c for c in lab.docker.containers() if c["name"].startswith("vm_vm-")]


def test_up_brings_vagrant_machines_whose_workers_register_and_down_destroys_them(
    tmp_path: Path, lab: VagrantLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    pool_file(lab, tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "vm-1: worker started" in up.stdout and "vm-2: worker started" in up.stdout
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    workers = {w["name"]: w for w in shoal_json("workers", cwd=tmp_path)}
    assert {"vm-1", "vm-2"} <= set(workers), workers
    assert len(machines_of(lab)) == 2
    machines = {m["name"]: m for m in shoal_json("machines", cwd=tmp_path)}
    ids = {c["id"] for c in machines_of(lab)}
    assert {machines["vm-1"]["provider_id"], machines["vm-2"]["provider_id"]} == ids
    # The Vagrantfile is where the pool's machines are; a task runs on each machine.
    assert (tmp_path / ".shoal" / "vagrant" / "up" / "vm" / "Vagrantfile").exists()
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4]}\n"
        "    run: id -un > $SHOAL_RESULT.txt; echo '\"'$(id -un)'\"' > $SHOAL_RESULT; sleep 1\n",
    )
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=120,
        what="the run on the Vagrant machines",
    )
    assert set(shoal_json("results", cwd=tmp_path).values()) == {"vagrant"}
    # Machine 1 of the pool over ssh, as vagrant ssh-config says.
    there = shoal("ssh", "1", "--pool", "vm", "--", "id", "-un", cwd=tmp_path, env=lab.env())
    assert there.returncode == 0, there.stderr
    assert there.stdout == "vagrant\n"
    down = shoal("down", cwd=tmp_path, env=lab.env(), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert machines_of(lab) == []
    assert {m["state"] for m in shoal_json("machines", cwd=tmp_path)} == {"stopped"}


def test_down_destroys_the_vagrant_machines_after_the_keeper_and_the_boss_are_killed(
    tmp_path: Path, lab: VagrantLab, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    pool_file(lab, tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    assert len(machines_of(lab)) == 2
    os.kill(kept["pid"], signal.SIGKILL)
    os.kill(int(info["pid"]), signal.SIGKILL)
    wait_for(lambda: not alive(kept["pid"]) and not alive(int(info["pid"])), what="both to die")
    down = shoal("down", cwd=tmp_path, env=lab.env(), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert machines_of(lab) == []


def test_a_vagrant_provider_that_is_not_there_fails_each_machine_in_one_line(
    tmp_path: Path, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    write(
        tmp_path / "pools.yaml",
        "pools:\n  - name: vm\n    provider: vagrant\n    count: 2\n    vagrant_provider: nosuch\n",
    )
    env = {"VAGRANT_HOME": str(tmp_path / "vagrant-home")}
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=env, timeout=300)
    assert up.returncode == 1, up.stdout + up.stderr
    said = " ".join(up.stdout.split())
    log = tmp_path / ".shoal" / "logs" / "vagrant-vm.log"
    for name in ("vm-1", "vm-2"):
        assert (
            f"{name}: failed: The provider 'nosuch' could not be found, but was requested to "
            "back the machine 'vm-1'. (see " in said
        ), up.stdout
    assert log.exists()
    shoal("down", cwd=tmp_path, env=env)

"""Machines from a cloud: moto's EC2 through libcloud, each instance a real test host.

The cloud lab (tests/cloudlab.py) makes a host with its own sshd at each
private address moto hands out in its subnet (blackholed beforehand), so
shoal drives the "VMs" exactly as it would real ones: ssh, the agent
zipapp, a reverse tunnel to the boss. Nothing is ever sent to an address
moto made up without a test host there.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cloudlab import CloudLab, cloud_lab
from tests.conftest import SRC, Procs, alive, shoal, shoal_json, start_boss, wait_for, write
from tests.sshhosts import needs_ssh_hosts

pytestmark = needs_ssh_hosts


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[CloudLab]:
    with cloud_lab(tmp_path / "cloud") as made:
        yield made


def pool_file(lab: CloudLab, path: Path, **size: Any) -> Path:
    """A pool file for moto: one aws pool on the lab's subnet, reached at private addresses."""
    lines = [
        "pools:",
        "  - name: vm",
        "    provider: aws",
        *[f"    {k}: {v}" for k, v in size.items()],
        "    slots: 2",
        f"    endpoint: {lab.endpoint}",
        f"    region: {lab.region}",
        f"    image: {lab.image}",
        f"    size: {lab.size}",
        f"    subnet: {lab.subnet}",
        "    address: private",
        "    user: root",
        f"    key: {lab.key}",
    ]
    return write(path, "\n".join(lines) + "\n")


def machine_id(cwd: Path, name: str) -> str:
    """The provider id (instance id) of the machine so named."""
    return str({m["name"]: m for m in shoal_json("machines", cwd=cwd)}[name]["provider_id"])


def live_instances(lab: CloudLab) -> list[str]:
    return [i["InstanceId"] for i in lab.instances(("pending", "running", "stopping", "stopped"))]


def test_a_run_on_three_vms_leaves_every_instance_terminated(tmp_path: Path, lab: CloudLab) -> None:
    pool_file(lab, tmp_path / "pools.yaml", count=3)
    write(
        tmp_path / "t.yaml",
        "tasks:\n"
        "  - name: sim-{i}\n"
        "    matrix: {i: [1, 2, 3, 4, 5, 6]}\n"
        "    run: echo $(hostname -I 2>/dev/null || echo x) {i} > out.txt; sleep 1\n"
        "    outputs: [out.txt]\n"
        "  - name: sum\n"
        "    after: [sim-*]\n"
        "    run: cat inputs/*/out.txt | wc -l\n",
    )
    done = shoal("run", "t.yaml", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = shoal_json("tasks", cwd=tmp_path)
    assert {t["state"] for t in tasks} == {"succeeded"}
    workers = {t["worker"] for t in tasks if t["name"].startswith("sim-")}
    assert workers <= {"vm-1", "vm-2", "vm-3"} and len(workers) >= 2, done.stderr
    # Every instance it started is terminated, and recorded so.
    assert len(lab.instances()) == 3
    assert live_instances(lab) == []
    machines = shoal_json("machines", cwd=tmp_path)
    assert sorted(m["name"] for m in machines) == ["vm-1", "vm-2", "vm-3"], (machines, done.stderr)
    assert all(m["provider"] == "aws" and m["provider_id"].startswith("i-") for m in machines)
    assert all(m["state"] == "stopped" for m in machines), machines
    # Tagged as this boss's, with the pool's name, from the call that made them.
    tags = {t["Key"]: t["Value"] for t in lab.instances()[0].get("Tags", [])}
    assert tags["shoal-pool"] == "vm" and tags["shoal-boss"].startswith("shoal-")


def test_a_pool_grows_from_nothing_under_load_and_shrinks_to_nothing_when_idle(
    tmp_path: Path, lab: CloudLab, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    pool_file(lab, tmp_path / "pools.yaml", min=0, max=4, idle_stop="5s")
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    assert lab.instances() == []
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: t-{i}\n    matrix: {i: [" + ", ".join(map(str, range(40))) + "]}\n"
        "    run: sleep 2\n",
    )
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    lab.wait_hosts(4, timeout=120)
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=240,
        what="the run to succeed",
    )
    assert len(lab.instances()) == 4  # grown to its max, never above
    wait_for(lambda: live_instances(lab) == [], timeout=120, what="the idle VMs to terminate")
    machines = shoal_json("machines", cwd=tmp_path)
    assert all(m["state"] == "stopped" and "idle" in m["detail"] for m in machines), machines
    assert info["url"]
    assert shoal("down", cwd=tmp_path, env=lab.env()).returncode == 0


def test_down_terminates_everything_after_the_keeper_and_the_boss_are_killed(
    tmp_path: Path, lab: CloudLab, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    pool_file(lab, tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    assert len(live_instances(lab)) == 2
    # The vcloud flow on rented machines: each reached by its number in the pool.
    check = shoal("hosts", "check", "--pool", "vm", "--json", cwd=tmp_path, env=lab.env())
    assert check.returncode == 0, check.stdout + check.stderr
    assert [h["name"] for h in json.loads(check.stdout)] == ["vm-1", "vm-2"]
    here = shoal(
        "ssh", "1", "--pool", "vm", "--", "sh", "-c", "echo on $HOME", cwd=tmp_path, env=lab.env()
    )
    assert here.returncode == 0, here.stderr
    assert here.stdout.split() == ["on", str(lab.hosts[machine_id(tmp_path, "vm-2")].home)]
    os.kill(kept["pid"], signal.SIGKILL)
    os.kill(int(info["pid"]), signal.SIGKILL)
    wait_for(lambda: not alive(kept["pid"]) and not alive(int(info["pid"])), what="both to die")
    # One more, made behind shoal's back with this boss's tag: found by its tags too.
    tags = {t["Key"]: t["Value"] for t in lab.instances()[0]["Tags"]}
    lab.ec2.run_instances(
        ImageId=lab.image,
        InstanceType=lab.size,
        MinCount=1,
        MaxCount=1,
        SubnetId=lab.subnet,
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [
                    {"Key": "shoal-boss", "Value": tags["shoal-boss"]},
                    {"Key": "shoal-pool", "Value": "vm"},
                ],
            }
        ],
    )
    down = shoal("down", cwd=tmp_path, env=lab.env())
    assert down.returncode == 0, down.stdout + down.stderr
    wait_for(lambda: live_instances(lab) == [], timeout=30, what="every instance to terminate")
    assert len(lab.instances()) == 3


def test_a_vm_terminated_behind_shoals_back_has_its_task_rerun_and_is_replaced(
    tmp_path: Path, lab: CloudLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    pool_file(lab, tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: long-{i}\n    matrix: {i: [1, 2, 3, 4]}\n    run: sleep 8\n",
    )
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    # Every slot busy: the tasks of the VM that vanishes wait for a new one.
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["counts"].get("running") == 4,
        timeout=60,
        what="every task to run",
    )
    machines = {m["name"]: m for m in shoal_json("machines", cwd=tmp_path)}
    victim = machines["vm-1"]["provider_id"]
    lab.kill(victim)
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=240,
        what="the run to succeed anyway",
    )
    machines = {m["name"]: m for m in shoal_json("machines", cwd=tmp_path)}
    assert machines["vm-1"]["state"] == "preempted"
    tasks = shoal_json("tasks", cwd=tmp_path)
    rerun = [t for t in tasks if t["attempts"] >= 2]
    keeper_log = (tmp_path / ".shoal" / "logs" / "keeper.log").read_text()
    assert len(rerun) == 2, (tasks, machines, keeper_log)  # the two vm-1 held ran again
    assert "vm-3" in machines, keeper_log
    # The pool replaced it with a new machine (a new name: vm-1 keeps its record).
    assert machines["vm-3"]["provider"] == "aws" and machines["vm-3"]["provider_id"] != victim
    assert {t["worker"] for t in rerun} <= {"vm-2", "vm-3"}
    table = shoal("machines", cwd=tmp_path)
    assert "preempted" in table.stdout
    assert shoal("down", cwd=tmp_path, env=lab.env()).returncode == 0
    wait_for(lambda: live_instances(lab) == [], timeout=30, what="every instance to terminate")


def test_the_watchdog_powers_a_vm_off_when_no_agent_ran_for_idle_stop(
    tmp_path: Path, lab: CloudLab
) -> None:
    from shoal.launch.cloud.watchdog import user_data

    script = user_data(
        idle_stop=2.0, public_key=lab.key.with_suffix(".pub").read_text(), user="root"
    )
    lab.ec2.run_instances(
        ImageId=lab.image, InstanceType=lab.size, MinCount=1, MaxCount=1, SubnetId=lab.subnet
    )
    host = next(iter(lab.wait_hosts(1).values()))
    watch = host.home / "watch"
    marker = host.home / "powered-off"
    poweroff = write(host.home / "poweroff", f"#!/bin/sh\ntouch {marker}\n")
    poweroff.chmod(0o755)
    write(host.home / "user-data", script)
    ran = lab.ssh(
        host.addr,
        f"SHOAL_WATCH_DIR={watch} SHOAL_POWEROFF={poweroff} SHOAL_WATCH_EVERY=0.5 "
        f"sh {host.home / 'user-data'}",
    )
    assert ran.returncode == 0, ran.stderr
    try:
        wait_for(marker.exists, timeout=30, what="the watchdog to power the VM off")
    finally:
        pid = (
            (watch / "watchdog.pid").read_text().strip()
            if (watch / "watchdog.pid").exists()
            else ""
        )
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)
    assert time.time() - marker.stat().st_mtime < 60


def test_ctrl_c_during_a_run_terminates_every_vm_it_started(tmp_path: Path, lab: CloudLab) -> None:
    pool_file(lab, tmp_path / "pools.yaml", count=2)
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: long-{i}\n    matrix: {i: [1, 2, 3, 4]}\n    run: sleep 60\n",
    )
    env = {**os.environ, **lab.env()}
    env["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + SRC
    run = subprocess.Popen(
        [sys.executable, "-m", "shoal", "run", "t.yaml", "--pool", "pools.yaml"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lab.wait_hosts(2, timeout=120)
        wait_for(
            lambda: (
                (tmp_path / ".shoal" / "boss.json").exists()
                and shoal_json("status", cwd=tmp_path)["counts"].get("running") == 4
            ),
            timeout=60,
            what="the tasks to run on the VMs",
        )
        run.send_signal(signal.SIGINT)
        _out, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, err
    assert live_instances(lab) == [], err
    machines = shoal_json("machines", cwd=tmp_path)
    assert {m["state"] for m in machines} == {"stopped"}

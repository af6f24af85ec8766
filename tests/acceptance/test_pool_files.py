"""Pool files on the command line: ``shoal up --pool FILE``, ``--pool NAME``, costs.

The ssh test uses real sshd servers on test hosts in network namespaces
(:mod:`tests.sshhosts`); the others need nothing but this machine.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Procs, alive, shoal, shoal_json, start_boss, wait_for, write
from tests.sshhosts import SshLab, needs_ssh_hosts, ssh_lab


def _kept(cwd: Path, procs: Procs) -> dict[str, Any]:
    """The keeper's up.json; its PID and its ssh commands' are stopped if the test fails."""
    kept: dict[str, Any] = json.loads((cwd / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    for m in kept["machines"]:
        if m["provider"] == "ssh":
            procs.extra.append(int(m["provider_id"].split(":")[0]))
    return kept


def test_up_brings_up_a_pool_files_local_pool_and_its_machines_are_no_ssh_hosts(
    tmp_path: Path, procs: Procs
) -> None:
    write(
        tmp_path / "conf" / "pools.yaml",
        "pools:\n  - name: cpu\n    provider: local\n    count: 2\n    slots: 2\n"
        "    labels: [big]\n",
    )
    start_boss(procs, tmp_path)
    up = shoal("up", "--pool", "conf/pools.yaml", cwd=tmp_path, timeout=120)
    kept = _kept(tmp_path, procs)
    try:
        assert up.returncode == 0, up.stderr
        assert "cpu-1: worker started" in up.stdout and "cpu-2: worker started" in up.stdout
        assert "workers up on 2 of 2 machines" in up.stdout
        listed = shoal_json("machines", cwd=tmp_path)
        assert [(m["name"], m["pool"], m["provider"], m["slots"]) for m in listed] == [
            ("cpu-1", "cpu", "local", 2),
            ("cpu-2", "cpu", "local", 2),
        ]
        assert all(m["labels"] == {"big": True} for m in listed)
        assert all(m["uptime"] >= 0 and m["cost"] is None for m in listed)
        # The pool's labels reach the workers: a task that requires one runs.
        write(
            tmp_path / "tasks.yaml",
            "name: big\ntasks:\n  - {name: t, requires: {big: true}, run: echo on-big}\n",
        )
        assert shoal("submit", "tasks.yaml", cwd=tmp_path).returncode == 0
        wait_for(
            lambda: shoal_json("status", "big", cwd=tmp_path)["state"] == "succeeded",
            timeout=60,
            what="the run on the pool's workers",
        )
        status = shoal("status", "big", cwd=tmp_path)
        assert "pools: cpu 2 running" in status.stdout

        # The pool is remembered; its machines are processes here, not ssh hosts.
        assert stat.S_IMODE((tmp_path / ".shoal" / "pools.json").stat().st_mode) == 0o600
        there = shoal("ssh", "0", "--pool", "cpu", "--", "true", cwd=tmp_path)
        assert there.returncode == 2
        assert there.stderr == "shoal: pool cpu's machines are not reached over ssh\n"
        write(tmp_path / "bundle" / "shoal-launch", "#!/bin/sh\n")
        unknown = shoal("inject", "bundle", "--pool", "gpu", cwd=tmp_path)
        assert unknown.returncode == 2
        assert unknown.stderr == "shoal: no pool called 'gpu' (pools brought up here: cpu)\n"
    finally:
        down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "workers stopped on cpu-1, cpu-2" in down.stdout
    assert not alive(kept["pid"])
    assert {m["state"] for m in shoal_json("machines", cwd=tmp_path)} == {"stopped"}


def test_a_bad_pool_file_is_one_line_exit_2_and_nothing_is_started(tmp_path: Path) -> None:
    write(
        tmp_path / "pools.yaml",
        "pools:\n  - name: cpu\n    provider: local\n    count: 2\n    slots: 2\n"
        "  - name: gpu\n    provider: lokal\n    count: 1\n",
    )
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path)
    assert up.returncode == 2
    assert up.stderr == (
        "shoal: pools.yaml:7: pool 'gpu': no provider called 'lokal' "
        "(known: aws, azure, digitalocean, docker, gce, local, opennebula, openstack, slurm, ssh, vagrant)\n"
    )
    assert not (tmp_path / ".shoal").exists()
    neither = shoal("up", cwd=tmp_path)
    assert neither.returncode == 2 and "--pool FILE" in neither.stderr
    assert len(neither.stderr.splitlines()) == 1


def test_machines_show_uptime_and_cost_and_status_the_pools_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "tasks:\n  - {name: a, run: 'true'}\n")
    assert shoal("run", "t.yaml", "-j", "1", cwd=tmp_path).returncode == 0
    _record_priced_machines(tmp_path / ".shoal")

    listed = {m["name"]: m for m in shoal_json("machines", cwd=tmp_path)}
    assert (listed["cpu-1"]["uptime"], listed["cpu-1"]["cost"]) == (3600.0, pytest.approx(0.42))
    assert (listed["cpu-2"]["uptime"], listed["cpu-2"]["cost"]) == (1800.0, pytest.approx(0.85))
    assert listed["cpu-3"]["uptime"] >= 3600 and listed["cpu-3"]["cost"] is None
    assert listed["local-1"]["cost"] is None
    table = shoal("machines", cwd=tmp_path, env={"COLUMNS": "200"}).stdout
    row = next(line for line in table.splitlines() if line.startswith("cpu-1 "))
    assert "$0.42" in row and "60.0m" in row and "stopped" in row
    assert "$0.85" in table and "cost" in table

    status = shoal("status", cwd=tmp_path, env={"COLUMNS": "200"})
    assert status.returncode == 0, status.stderr
    assert "pools: local 0 · cpu 1 running · $1.27 so far" in status.stdout.splitlines()


def _record_priced_machines(state: Path) -> None:
    """As a cloud's launcher would: two machines that ran and stopped, one running, from 1 h ago."""
    import time

    from shoal.machines import Machines
    from shoal.statedir import StateDir
    from shoal.store import Store

    start = time.time() - 3600
    now = [start]
    store = Store(StateDir(state).database())
    book = Machines(store, clock=lambda: now[0])
    try:
        priced = [
            {"name": "cpu-1", "pool": "cpu", "provider": "fake", "price": 0.42},
            {"name": "cpu-2", "pool": "cpu", "provider": "fake", "price": 1.7},
            {"name": "cpu-3", "pool": "cpu", "provider": "fake"},
        ]
        book.record("up:test", [{**m, "state": "running"} for m in priced])
        now[0] = start + 1800
        book.record("up:test", [{**priced[1], "state": "stopped"}])
        now[0] = start + 3600
        book.record("up:test", [{**priced[0], "state": "stopped"}])
    finally:
        store.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[SshLab]:
    with ssh_lab(tmp_path / "lab", 3) as made:
        yield made


@needs_ssh_hosts
def test_launch_inject_connect_pull_and_check_a_pool_by_name(
    tmp_path: Path, lab: SshLab, procs: Procs
) -> None:
    # Two of the inventory's three hosts make pool 'edge'; a local pool beside it.
    write(tmp_path / "inv" / "hosts.yaml", lab.inventory())
    write(
        tmp_path / "conf" / "pools.yaml",
        "pools:\n"
        "  - name: edge\n"
        "    provider: ssh\n"
        "    inventory: ../inv/hosts.yaml\n"
        "    count: 2\n"
        "    slots: 2\n"
        "  - {name: cpu, provider: local, count: 1}\n",
    )
    start_boss(procs, tmp_path)
    up = shoal("up", "--pool", "conf/pools.yaml", cwd=tmp_path, timeout=120)
    _kept(tmp_path, procs)
    try:
        assert up.returncode == 0, up.stderr
        assert "workers up on 3 of 3 machines" in up.stdout
        edge = [m for m in shoal_json("machines", cwd=tmp_path) if m["pool"] == "edge"]
        assert [(m["name"], m["slots"], m["state"]) for m in edge] == [
            ("h1", 2, "running"),
            ("h2", 2, "running"),
        ]

        checked = shoal("hosts", "check", "--pool", "edge", "--json", cwd=tmp_path)
        assert checked.returncode == 0, checked.stderr
        assert [(c["name"], c["reachable"]) for c in json.loads(checked.stdout)] == [
            ("h1", True),
            ("h2", True),
        ]

        launch = write(
            tmp_path / "bundle" / "shoal-launch",
            '#!/bin/sh\necho "$SHOAL_HOST_INDEX $SHOAL_HOST_COUNT $HOME" > whoami.txt\n',
        )
        launch.chmod(0o755)
        injected = shoal("inject", "bundle", "--pool", "edge", cwd=tmp_path)
        assert injected.returncode == 0, injected.stderr
        assert "h1: started shoal-launch" in injected.stdout
        assert "h2: started shoal-launch" in injected.stdout and "h3" not in injected.stdout
        expected = f"1 2 {lab.hosts[1].home}\n"

        def pulled() -> str:
            got = shoal("pull", "1", "whoami.txt", "back.txt", "--pool", "edge", cwd=tmp_path)
            assert got.returncode == 0, got.stderr
            return (tmp_path / "back.txt").read_text()

        wait_for(lambda: pulled() == expected, timeout=30, what="machine 1's launch script")
        there = shoal("ssh", "0", "--pool", "edge", "--", "cat", "whoami.txt", cwd=tmp_path)
        assert there.returncode == 0, there.stderr
        assert there.stdout == f"0 2 {lab.hosts[0].home}\n"
        both = shoal("ssh", "0", "--pool", "edge", "--hosts", "inv/hosts.yaml", cwd=tmp_path)
        assert both.returncode == 2 and "not both" in both.stderr
    finally:
        down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    gone = shoal("ssh", "0", "--pool", "edge", "--", "true", cwd=tmp_path)
    assert gone.returncode == 2 and "pool edge has no live machines" in gone.stderr

"""Machines that are Docker containers, on a real dockerd of the test's own.

The Docker lab (tests/dockerlab.py) runs dockerd by hand with no network
setup and an image built here (Debian with python3); the containers run with
``network: host``, so their agents reach the boss on this machine's loopback.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Procs, alive, shoal, shoal_json, start_boss, wait_for, write
from tests.dockerlab import DockerLab, docker_lab, needs_docker

pytestmark = needs_docker


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[DockerLab]:
    with docker_lab(tmp_path / "docker") as made:
        yield made


def pool_file(lab: DockerLab, path: Path, **fields: Any) -> Path:
    """A pool file of one docker pool, ``box``, of the lab's image on the host's network."""
    lines = [
        "pools:",
        "  - name: box",
        "    provider: docker",
        f"    image: {lab.image}",
        "    network: host",
        *[f"    {k}: {v}" for k, v in fields.items()],
    ]
    return write(path, "\n".join(lines) + "\n")


def boss_tag(cwd: Path) -> str:
    return (cwd / ".shoal" / "boss-tag").read_text().strip()


def ours(lab: DockerLab, cwd: Path) -> list[dict[str, str]]:
    """The containers that carry this state folder's boss label, running or not."""
    return lab.containers(f"shoal-boss={boss_tag(cwd)}")


def test_a_run_on_three_containers_runs_tasks_in_each_and_leaves_none(
    tmp_path: Path, lab: DockerLab
) -> None:
    pool_file(lab, tmp_path / "pools.yaml", count=3, slots=1)
    write(
        tmp_path / "t.yaml",
        "tasks:\n"
        "  - name: t-{i}\n"
        "    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n"
        # Inside a container only: Docker puts /.dockerenv in every one.
        "    run: test -f /.dockerenv && echo '\"container\"' > $SHOAL_RESULT; sleep 2\n",
    )
    done = shoal("run", "t.yaml", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = shoal_json("tasks", cwd=tmp_path)
    assert {t["state"] for t in tasks} == {"succeeded"}, tasks
    assert {t["worker"] for t in tasks} == {"box-1", "box-2", "box-3"}, tasks
    results = shoal_json("results", cwd=tmp_path)
    assert results == {f"t-{i}": "container" for i in range(1, 10)}, results
    machines = shoal_json("machines", cwd=tmp_path)
    assert sorted(m["name"] for m in machines) == ["box-1", "box-2", "box-3"]
    assert all(m["provider"] == "docker" and len(m["provider_id"]) == 64 for m in machines)
    assert {m["state"] for m in machines} == {"stopped"}, machines
    # Every container it ran is removed.
    assert ours(lab, tmp_path) == []
    assert lab.containers() == []


def test_a_container_killed_mid_task_has_its_tasks_run_again(
    tmp_path: Path, lab: DockerLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    pool_file(lab, tmp_path / "pools.yaml", count=2, slots=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: long-{i}\n    matrix: {i: [1, 2, 3, 4]}\n    run: sleep 6\n",
    )
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["counts"].get("running") == 4,
        timeout=60,
        what="every task to run",
    )
    victim = {m["name"]: m for m in shoal_json("machines", cwd=tmp_path)}["box-1"]["provider_id"]
    lab.docker("kill", victim)
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=240,
        what="the run to succeed anyway",
    )
    tasks = shoal_json("tasks", cwd=tmp_path)
    keeper_log = (tmp_path / ".shoal" / "logs" / "keeper.log").read_text()
    rerun = [t for t in tasks if t["attempts"] >= 2]
    events = shoal("events", cwd=tmp_path).stdout  # says who ran what, and why again
    assert len(rerun) == 2, events + keeper_log  # the two box-1 held ran again
    assert "box-1: preempted (the container is exited)" in keeper_log, keeper_log
    # The pool is held at its size: box-1 runs again, in a new container.
    wait_for(
        lambda: [
            m
            for m in shoal_json("machines", cwd=tmp_path)
            if m["name"] == "box-1" and m["state"] == "running" and m["provider_id"] != victim
        ],
        timeout=120,
        what="box-1 to run again",
    )
    live = ours(lab, tmp_path)
    assert sorted(c["machine"] for c in live) == ["box-1", "box-2"], live
    assert victim not in {c["id"] for c in live}  # the killed one does not linger
    down = shoal("down", cwd=tmp_path, env=lab.env())
    assert down.returncode == 0, down.stdout + down.stderr
    assert ours(lab, tmp_path) == []


def test_down_removes_every_container_after_the_keeper_and_the_boss_are_killed(
    tmp_path: Path, lab: DockerLab, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    pool_file(lab, tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "box-1: worker started" in up.stdout and "box-2: worker started" in up.stdout
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    assert [c["machine"] for c in ours(lab, tmp_path)] != []
    assert sorted(c["machine"] for c in ours(lab, tmp_path)) == ["box-1", "box-2"]
    # The token is in no container's configuration, nor on any command line there.
    for c in ours(lab, tmp_path):
        assert info["token"] not in lab.docker("inspect", c["id"]).stdout
        ps = lab.docker("exec", c["id"], "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        assert "shoal-agent" in ps.stdout and info["token"] not in ps.stdout
    # Machine 0 of the pool, reached with docker exec.
    there = shoal(
        "ssh", "0", "--pool", "box", "--", "cat", "/etc/os-release", cwd=tmp_path, env=lab.env()
    )
    assert there.returncode == 0, there.stderr
    assert "VERSION_CODENAME=bookworm" in there.stdout
    # A bundle injected into every container (docker exec), a file pulled back from one.
    launch = write(
        tmp_path / "bundle" / "shoal-launch",
        '#!/bin/sh\necho "$SHOAL_HOST_INDEX of $SHOAL_HOST_COUNT" > whoami.txt\n',
    )
    launch.chmod(0o755)
    injected = shoal("inject", "bundle", "--pool", "box", cwd=tmp_path, env=lab.env())
    assert injected.returncode == 0, injected.stdout + injected.stderr
    assert injected.stdout.count("started shoal-launch") == 2

    def pulled() -> str:
        got = shoal(
            "pull", "1", "whoami.txt", "got.txt", "--pool", "box", cwd=tmp_path, env=lab.env()
        )
        return (tmp_path / "got.txt").read_text() if got.returncode == 0 else ""

    assert wait_for(pulled, timeout=30, what="machine 1's launch script") == "1 of 2\n"
    os.kill(kept["pid"], signal.SIGKILL)
    os.kill(int(info["pid"]), signal.SIGKILL)
    wait_for(lambda: not alive(kept["pid"]) and not alive(int(info["pid"])), what="both to die")
    # One more, run behind shoal's back with this boss's label: found by it too.
    lab.docker(
        "run",
        "--detach",
        "--network=host",
        f"--label=shoal-boss={boss_tag(tmp_path)}",
        "--label=shoal-pool=box",
        "--entrypoint=sleep",
        lab.image,
        "600",
    )
    assert len(ours(lab, tmp_path)) == 3
    down = shoal("down", cwd=tmp_path, env=lab.env())
    assert down.returncode == 0, down.stdout + down.stderr
    assert ours(lab, tmp_path) == []
    assert lab.containers() == []


def test_an_image_that_is_not_there_fails_its_machine_in_one_line_and_leaves_nothing(
    tmp_path: Path, lab: DockerLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    write(
        tmp_path / "pools.yaml",
        "pools:\n  - name: box\n    provider: docker\n    count: 1\n"
        # Never pulled: no test reaches a registry.
        "    image: shoal-lab/missing:1\n    options: [--pull=never]\n",
    )
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    assert up.returncode == 1, up.stdout + up.stderr
    said = " ".join(up.stdout.split())
    assert said.startswith("box-1: failed: No such image: shoal-lab/missing:1"), up.stdout
    assert lab.containers() == []
    shoal("down", cwd=tmp_path, env=lab.env())

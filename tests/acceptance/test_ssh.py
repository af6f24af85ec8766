"""Workers on ssh hosts: real sshd servers on test hosts in network namespaces."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    Procs,
    alive,
    free_port,
    shoal,
    shoal_json,
    start_boss,
    wait_for,
    write,
)
from tests.sshhosts import SshLab, needs_ssh_hosts, needs_tmux, ssh_lab

pytestmark = needs_ssh_hosts


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[SshLab]:
    # h4 does not accept the test's key.
    with ssh_lab(tmp_path / "lab", 4, refuse=(3,)) as made:
        yield made


def test_hosts_check_tells_each_host_apart(tmp_path: Path, lab: SshLab) -> None:
    # Another key on record for h1's address: as if h1's host key had changed.
    other = (lab.root / "id_other.pub").read_text().split()
    write(tmp_path / "stale_known_hosts", f"{lab.hosts[0].addr} {other[0]} {other[1]}\n")
    text = lab.inventory(h1={"slots": 2}) + (
        "  - name: closed\n"
        f"    address: {lab.hosts[0].addr}\n"
        "    port: 2\n"  # nothing listens there
        f"    identity: {lab.key}\n"
        "  - name: changed\n"
        f"    address: {lab.hosts[0].addr}\n"
        "    user: root\n"
        f"    identity: {lab.key}\n"
        "    ssh_options: [-o, StrictHostKeyChecking=yes, -o, "
        f"UserKnownHostsFile={tmp_path / 'stale_known_hosts'}]\n"
    )
    write(tmp_path / "hosts.yaml", text)
    proc = shoal("hosts", "check", "--hosts", "hosts.yaml", "--json", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # not every host is usable
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    for name in ("h1", "h2", "h3"):
        assert checks[name]["reachable"] and checks[name]["error"] is None
        assert checks[name]["python"].startswith("3.")
        assert checks[name]["free_disk_gb"] > 0 and checks[name]["connect_seconds"] > 0
    assert not checks["h4"]["reachable"]
    assert "Permission denied (publickey)" in checks["h4"]["error"]
    assert not checks["closed"]["reachable"]
    assert "Connection refused" in checks["closed"]["error"]
    assert not checks["changed"]["reachable"]
    assert "Host key verification failed" in checks["changed"]["error"]
    table = shoal("hosts", "check", "--hosts", "hosts.yaml", cwd=tmp_path)
    words = " ".join(table.stdout.split())  # the table wraps long errors
    assert "Permission denied" in words and "unreachable" in words


def test_a_run_spread_over_three_hosts_with_slots_pinning_and_labels(
    tmp_path: Path, lab: SshLab
) -> None:
    write(
        tmp_path / "hosts.yaml",
        lab.inventory(h1={"slots": 2}, h2={"slots": 1}, h3={"slots": 3, "labels": "{gpu: true}"}),
    )
    write(
        tmp_path / "tasks.yaml",
        "name: spread\n"
        "tasks:\n"
        "  - name: any-{i}\n"
        "    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8, 9]}\n"
        "    run: sleep 0.3; echo $HOME\n"
        "  - {name: pinned, host: h2, run: echo $HOME}\n"
        "  - {name: gpu, requires: {gpu: true}, run: echo $HOME}\n"
        "  - name: sum\n"
        "    after: [pinned, gpu]\n"
        "    run: echo 42\n",
    )
    proc = shoal("run", "tasks.yaml", "--hosts", "hosts.yaml", cwd=tmp_path, timeout=180)
    assert proc.returncode == 0, proc.stderr
    # The host that refused the key is named, with ssh's own words; the run went on.
    assert "host h4: " in proc.stderr and "Permission denied (publickey)" in proc.stderr
    assert "on 3 ssh hosts" in proc.stderr
    tasks = {t["name"]: t for t in shoal_json("tasks", cwd=tmp_path)}
    assert all(t["state"] == "succeeded" for t in tasks.values())
    homes = {h.name: str(h.home) for h in lab.hosts}
    results = shoal_json("results", cwd=tmp_path)
    assert tasks["pinned"]["worker"] == "h2" and results["pinned"] == homes["h2"]
    assert tasks["gpu"]["worker"] == "h3" and results["gpu"] == homes["h3"]
    used = {tasks[f"any-{i}"]["worker"] for i in range(1, 10)}
    assert used <= {"h1", "h2", "h3"} and len(used) >= 2
    assert {results[f"any-{i}"] for i in range(1, 10)} <= set(homes.values())
    # The agent went to each host once, kept by its hash.
    for h in lab.hosts[:3]:
        assert len(list((h.home / ".shoal" / "agent").glob("shoal-agent-*.pyz"))) == 1


def test_inject_runs_the_launch_script_everywhere_and_pull_brings_a_file_back(
    tmp_path: Path, lab: SshLab
) -> None:
    write(tmp_path / "hosts.yaml", lab.inventory())
    launch = write(
        tmp_path / "bundle" / "shoal-launch",
        "#!/bin/sh\n"
        'echo "$SHOAL_HOST_INDEX $SHOAL_HOST_COUNT $SHOAL_HOSTS" > whoami.txt\n'
        "sleep 1\n"  # still running when the ssh connection is long gone
        "echo done >> whoami.txt\n",
    )
    launch.chmod(0o755)
    proc = shoal("inject", "bundle", "--hosts", "hosts.yaml", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # h4 refuses the key
    for name in ("h1", "h2", "h3"):
        assert f"{name}: started shoal-launch" in proc.stdout
    assert "h4: failed: " in proc.stdout and "Permission denied" in proc.stdout

    addresses = " ".join(h.addr for h in lab.hosts)

    def pulled() -> str:
        got = shoal("pull", "h2", "whoami.txt", "back.txt", "--hosts", "hosts.yaml", cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        return (tmp_path / "back.txt").read_text()

    from tests.conftest import wait_for

    wait_for(lambda: "done" in pulled(), timeout=20, what="the launch script to finish")
    assert pulled() == f"1 4 {addresses}\ndone\n"
    there = shoal("ssh", "2", "--hosts", "hosts.yaml", "--", "cat", "whoami.txt", cwd=tmp_path)
    assert there.stdout.startswith(f"2 4 {addresses}"), there.stderr
    missing = shoal("pull", "h1", "nope.txt", "--hosts", "hosts.yaml", cwd=tmp_path)
    assert missing.returncode == 1 and "cannot copy nope.txt from h1" in missing.stderr


def test_a_host_whose_link_goes_down_mid_run_has_its_tasks_done_elsewhere(
    tmp_path: Path, lab: SshLab
) -> None:
    import subprocess
    import sys
    import time

    from tests.conftest import SRC, wait_for

    write(tmp_path / "hosts.yaml", lab.inventory(h1={"slots": 2}, h2={"slots": 2}))
    write(
        tmp_path / "tasks.yaml",
        "name: cut\n"
        "tasks:\n"
        "  - name: t-{i}\n"
        f"    matrix: {{i: {list(range(24))}}}\n"
        "    run: sleep 1; echo $HOME\n",
    )
    with (tmp_path / "run.log").open("w") as log:
        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "shoal", "run", "tasks.yaml"),
                *("--hosts", "hosts.yaml", "--lease", "3", "--json"),
            ],
            cwd=tmp_path,
            env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        cut = lab.hosts[1]
        # Once the cut host has work in hand, take its link down.
        wait_for(
            lambda: (
                any(
                    t["state"] == "running" and t["worker"] == cut.name
                    for t in shoal_json("tasks", cwd=tmp_path)
                )
                if (tmp_path / ".shoal" / "boss.json").exists()
                else False
            ),
            timeout=60,
            what="the cut host to run a task",
        )
        cut.link(up=False)
        cut_at = time.time()
        out, _ = run.communicate(timeout=150)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, (tmp_path / "run.log").read_text()
    view = json.loads(out)
    assert view["state"] == "succeeded"
    homes = {h.name: str(h.home) for h in lab.hosts}
    lost = [t for t in view["tasks"] if t["attempts"] > 1]
    assert lost, "no attempt was lost with the link"
    for t in view["tasks"]:
        assert t["state"] == "succeeded"
    results = view["results"]
    # What finished after the cut was done by the hosts still reachable.
    for t in lost:
        assert results[t["name"]] in (homes["h1"], homes["h3"])
    assert time.time() - cut_at < 150


def _wheel(path: Path, package: str, value: str) -> None:
    """A minimal pure-Python wheel that pip installs with no index and no build step."""
    import zipfile

    info = f"{package}-1.0.dist-info"
    files = {
        f"{package}/__init__.py": f"VALUE = {value!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)


def test_a_bundle_venv_is_built_once_per_host_and_a_host_that_cannot_takes_no_tasks(
    tmp_path: Path, lab: SshLab
) -> None:
    import sys

    write(tmp_path / "hosts.yaml", lab.inventory(h1={"slots": 2}, h2={"slots": 2}))
    _wheel(
        tmp_path / "code" / "wheels" / "shoaltest-1.0-py3-none-any.whl", "shoaltest", "from venv"
    )
    write(tmp_path / "code" / "requirements.txt", "./wheels/shoaltest-1.0-py3-none-any.whl\n")
    # h3 lacks what the setup needs: its setup fails and it takes no tasks.
    write(lab.hosts[2].home / "no-venv", "")
    write(
        tmp_path / "tasks.yaml",
        "name: venv\n"
        "bundle: code\n"
        "setup: |\n"
        '  if [ -e "$HOME/no-venv" ]; then echo "no venv module on this host" >&2; exit 1; fi\n'
        '  echo set up >> "$HOME/setups.txt"\n'
        f"  {sys.executable} -m venv venv\n"
        "  venv/bin/pip install --quiet --no-index --disable-pip-version-check"
        " -r requirements.txt\n"
        "tasks:\n"
        "  - name: t-{i}\n"
        "    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8]}\n"
        "    run: sleep 0.2; venv/bin/python -c 'import os, shoaltest;"
        ' print(shoaltest.VALUE, os.environ["HOME"])\'\n',
    )
    first = shoal("run", "tasks.yaml", "--hosts", "hosts.yaml", cwd=tmp_path, timeout=240)
    assert first.returncode == 0, first.stderr
    said = " ".join(first.stderr.split())
    assert "worker h3 stopped: bundle setup failed with exit code 1" in said
    assert "no venv module on this host" in said and ".shoal-setup.log" in said
    homes = {str(h.home): h.name for h in lab.hosts}
    results = shoal_json("results", "venv", cwd=tmp_path)
    assert len(results) == 8
    for value in results.values():
        where, home = value.rsplit(" ", 1)
        assert where == "from venv" and homes[home] in ("h1", "h2")
    bundles = {
        h.name: next(p for p in (h.home / ".shoal" / "work" / "bundles").iterdir() if p.is_dir())
        for h in lab.hosts[:2]
    }
    inodes = {name: folder.stat().st_ino for name, folder in bundles.items()}

    # A second run of the same bundle: nothing is sent again and setup does not run again.
    second = shoal(
        "run", "tasks.yaml", "--fresh", "--hosts", "hosts.yaml", cwd=tmp_path, timeout=240
    )
    assert second.returncode == 0, second.stderr
    assert len(shoal_json("results", "venv", cwd=tmp_path)) == 8
    for h in lab.hosts[:2]:
        assert (h.home / "setups.txt").read_text() == "set up\n"
        assert bundles[h.name].stat().st_ino == inodes[h.name]
        assert "no venv" not in (bundles[h.name] / ".shoal-setup.log").read_text()
    assert not (lab.hosts[2].home / "setups.txt").exists()


def _ssh(kept: dict[str, Any]) -> list[dict[str, Any]]:
    """The ssh commands holding the agents, by host, from the keeper's up.json."""
    return [
        {"host": m["name"], "pid": int(m["provider_id"].split(":")[0])} for m in kept["machines"]
    ]


def test_up_and_down_keep_workers_on_the_hosts_for_a_running_boss(
    tmp_path: Path, lab: SshLab, procs: Procs
) -> None:
    write(tmp_path / "hosts.yaml", lab.inventory(h1={"slots": 2}))
    start_boss(procs, tmp_path)
    up = shoal("up", "--hosts", "hosts.yaml", cwd=tmp_path, timeout=120)
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra += [kept["pid"], *(e["pid"] for e in _ssh(kept))]  # if the test fails early
    try:
        assert up.returncode == 0, up.stderr
        for name in ("h1", "h2", "h3"):
            assert f"{name}: worker started (agent copied)" in up.stdout
        assert "h4: failed: " in up.stdout and "Permission denied" in up.stdout
        assert "workers up on 3 of 4 hosts" in up.stdout
        assert kept["hosts"] == ["h1", "h2", "h3"] and alive(kept["pid"])

        again = shoal("up", "--hosts", "hosts.yaml", cwd=tmp_path)
        assert (
            again.returncode == 2 and "already up" in again.stderr and "shoal down" in again.stderr
        )

        # The workers outlived `shoal up`: a run submitted now runs on them.
        write(
            tmp_path / "tasks.yaml",
            "name: kept\ntasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6]}\n"
            "    run: sleep 0.2; echo $HOME\n",
        )
        assert shoal("submit", "tasks.yaml", cwd=tmp_path).returncode == 0
        wait_for(
            lambda: shoal_json("status", "kept", cwd=tmp_path)["state"] == "succeeded",
            timeout=60,
            what="the run on the kept workers",
        )
        homes = {str(h.home) for h in lab.hosts[:3]}
        assert set(shoal_json("results", "kept", cwd=tmp_path).values()) <= homes

        # A host whose connection drops gets its worker started again.
        h1 = next(e for e in _ssh(kept) if e["host"] == "h1")
        os.kill(h1["pid"], signal.SIGKILL)

        def restarted() -> bool:
            now = json.loads((tmp_path / ".shoal" / "up.json").read_text())
            return any(e["host"] == "h1" and e["pid"] != h1["pid"] for e in _ssh(now))

        wait_for(restarted, timeout=30, what="h1's worker to start again")
        kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
        procs.extra += [e["pid"] for e in _ssh(kept)]
        wait_for(
            lambda: (
                sorted(
                    w["name"] for w in shoal_json("workers", cwd=tmp_path) if w["state"] == "active"
                )
                == ["h1", "h2", "h3"]
            ),
            what="three active workers again",
        )
    finally:
        down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "workers stopped on h1, h2, h3" in down.stdout
    assert not alive(kept["pid"])
    assert not any(alive(e["pid"]) for e in _ssh(kept))
    assert not (tmp_path / ".shoal" / "up.json").exists()
    wait_for(
        lambda: all(w["state"] != "active" for w in shoal_json("workers", cwd=tmp_path)),
        what="the workers to say goodbye",
    )
    nothing = shoal("down", cwd=tmp_path)
    assert nothing.returncode == 2 and "no workers are up" in nothing.stderr


def test_shoal_machines_lists_what_up_started_and_down_stops_it_after_the_keeper_is_killed(
    tmp_path: Path, lab: SshLab, procs: Procs
) -> None:
    write(tmp_path / "hosts.yaml", lab.inventory(only=("h1", "h2"), h2={"slots": 3}))
    start_boss(procs, tmp_path)
    up = shoal("up", "--hosts", "hosts.yaml", cwd=tmp_path, timeout=120)
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra += [kept["pid"], *(e["pid"] for e in _ssh(kept))]  # if the test fails early
    assert up.returncode == 0, up.stderr
    listed = {m["name"]: m for m in shoal_json("machines", cwd=tmp_path)}
    assert sorted(listed) == ["h1", "h2"]
    for h in lab.hosts[:2]:
        m = listed[h.name]
        assert (m["provider"], m["pool"], m["state"]) == ("ssh", "hosts", "running")
        assert m["address"] == f"root@{h.addr}" and m["owner"].startswith("up:")
    assert (listed["h1"]["slots"], listed["h2"]["slots"]) == (1, 3)
    table = shoal("machines", cwd=tmp_path).stdout
    assert "h1" in table and "ssh" in table and "running" in table
    workers = shoal_json("workers", cwd=tmp_path)
    assert sorted((w["name"], w["machine"]) for w in workers) == [("h1", "h1"), ("h2", "h2")]

    # The keeper dies without a word (its agents' lifelines with it); the
    # record of its machines outlives it, and `shoal down` finds them there.
    os.kill(kept["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(kept["pid"]), what="the keeper to die")
    clients = [e["pid"] for e in _ssh(kept)]
    assert {m["state"] for m in shoal_json("machines", cwd=tmp_path)} == {"running"}
    down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "workers stopped on h1, h2" in down.stdout
    wait_for(lambda: not any(alive(pid) for pid in clients), what="the ssh commands to end")
    wait_for(
        lambda: all(w["state"] != "active" for w in shoal_json("workers", cwd=tmp_path)),
        what="the workers to leave",
    )
    assert {m["state"] for m in shoal_json("machines", cwd=tmp_path)} == {"stopped"}
    assert not (tmp_path / ".shoal" / "up.json").exists()


def test_up_with_a_direct_boss_url_and_down_drain_lets_tasks_finish(
    tmp_path: Path, lab: SshLab, procs: Procs
) -> None:
    h1 = lab.hosts[0]
    write(tmp_path / "hosts.yaml", lab.inventory(only=("h1",)))
    # The boss listens on this machine's end of h1's link, which h1 reaches directly.
    url = f"http://{h1.local_addr}:{free_port()}"
    # Plain HTTP off loopback must be asked for (--insecure): this test is about the direct URL.
    start_boss(procs, tmp_path, "--insecure", listen=url.removeprefix("http://"))
    up = shoal("up", "--hosts", "hosts.yaml", "--boss-url", url, cwd=tmp_path, timeout=120)
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra += [kept["pid"], *(e["pid"] for e in _ssh(kept))]
    assert up.returncode == 0, up.stderr
    # No tunnel: the worker goes straight to the boss's address.
    argv = Path(f"/proc/{_ssh(kept)[0]['pid']}/cmdline").read_text().split("\0")
    assert "-R" not in argv and f"--boss={url}" in argv[-2]
    write(
        tmp_path / "tasks.yaml",
        "name: slow\ntasks:\n  - {name: nap, run: 'sleep 2; echo rested'}\n",
    )
    assert shoal("submit", "tasks.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", "slow", cwd=tmp_path)["counts"].get("running") == 1,
        what="the task to start on h1",
    )
    down = shoal("down", "--drain", cwd=tmp_path, timeout=60)
    assert down.returncode == 0, down.stderr
    assert shoal_json("results", "slow", cwd=tmp_path) == {"nap": "rested"}
    task = shoal_json("tasks", "slow", cwd=tmp_path)[0]
    assert task["worker"] == "h1" and task["attempts"] == 1
    assert not alive(kept["pid"])
    workers = shoal_json("workers", cwd=tmp_path)
    assert [w["state"] for w in workers] == ["stopped"]


def _read_until(fd: int, text: bytes, seen: bytearray, timeout: float = 30) -> None:
    import select
    import time

    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"never saw {text!r} in: {bytes(seen)[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the terminal closed
                assert text in seen, f"never saw {text!r} in: {bytes(seen)[-2000:]!r}"


@needs_tmux
def test_ssh_attach_joins_the_injected_script_in_its_terminal(tmp_path: Path, lab: SshLab) -> None:
    import subprocess
    import sys

    from tests.conftest import SRC

    write(tmp_path / "hosts.yaml", lab.inventory(only=("h1", "h2")))
    launch = write(
        tmp_path / "bundle" / "shoal-launch",
        "#!/bin/sh\n"
        'echo "waiting for a line on host $SHOAL_HOST_INDEX"\n'
        "read line\n"
        'echo "got $line" > reply.txt\n',
    )
    launch.chmod(0o755)
    assert shoal("inject", "bundle", "--hosts", "hosts.yaml", cwd=tmp_path).returncode == 0

    # A terminal of our own, as a user's would be.
    controller, terminal = os.openpty()
    attach = subprocess.Popen(
        [sys.executable, "-m", "shoal", "ssh", "1", "--attach", "--hosts", "hosts.yaml"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=SRC, TERM="xterm"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    seen = bytearray()
    try:
        _read_until(controller, b"waiting for a line on host 1", seen)
        os.write(controller, b"hello from the terminal\r")
        # The script ends, so does its session, and the attached ssh with it.
        assert attach.wait(30) == 0, bytes(seen)[-2000:]
    finally:
        if attach.poll() is None:
            attach.kill()
            attach.wait()
        os.close(controller)
    got = shoal("ssh", "h2", "--hosts", "hosts.yaml", "--", "cat", "reply.txt", cwd=tmp_path)
    assert got.stdout == "got hello from the terminal\n", got.stderr

    # Once it has ended, --attach shows the end of its log instead.
    ended = shoal("ssh", "1", "--attach", "--hosts", "hosts.yaml", cwd=tmp_path)
    assert "the injected shoal-launch has ended" in ended.stdout, ended.stderr
    assert "waiting for a line on host 1" in ended.stdout
    assert "[shoal-launch exited with code 0]" in ended.stdout

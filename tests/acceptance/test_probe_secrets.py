"""Holes found by probing what a task can read of its worker's credentials."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shoal.statedir import StateDir
from tests.conftest import Procs, shoal, shoal_json, start_boss, wait_for, write
from tests.dockerlab import docker_lab, needs_docker
from tests.slurmlab import needs_slurm, slurm_lab
from tests.sshhosts import SshLab, keygen, make_host, needs_ssh_hosts, stop_host

# What a hostile task does: read the environment its agent was started with.
PARENT_ENV = """
tasks:
  - name: spy
    run: "tr '\\\\0' '\\\\n' < /proc/$PPID/environ | grep '^SHOAL_TOKEN' || echo none-found"
"""


def test_a_task_cannot_read_the_worker_token_from_its_agents_environment(
    tmp_path: Path,
) -> None:
    """The agent drops SHOAL_TOKEN from os.environ, but /proc/PID/environ keeps what it started with.

    Every launcher (local, ssh, docker) starts its agent with the worker
    token in SHOAL_TOKEN, so any task reads it from its parent's environment
    and can register workers of its own with it.
    """
    write(tmp_path / "t.yaml", PARENT_ENV)
    proc = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    log = shoal("logs", "spy", cwd=tmp_path)
    assert log.returncode == 0, log.stderr
    assert "none-found" in log.stdout, log.stdout


# What a hostile task does next: look through the environment of every
# process above it, its agent's and up to the launcher's (STOP in its command
# line; the launcher's own too if INCLUDE is 1), for a boss credential
# (SHOAL_TOKEN*, or the token itself: NEEDLE), and at its own standard input
# and what its agent's still holds (a file: Slurm hands the token in one).
# It prints what it finds, never a whole environment.
SPY = r"""
p=$PPID
while [ -n "$p" ] && [ "$p" -gt 1 ]; do
  c=$(tr '\0' ' ' < /proc/$p/cmdline || true)
  last=
  case "$c" in
    *'@STOP@'*) echo "== reached $p"; [ @INCLUDE@ = 1 ] || break; last=1 ;;
  esac
  echo "== env $p $c"
  if tr '\0' '\n' < /proc/$p/environ > .environ; then
    echo "($(wc -l < .environ) variables)"
    grep -F -e SHOAL_TOKEN -e '@NEEDLE@' .environ || true
  else
    echo "(unreadable)"
  fi
  rm -f .environ
  [ -z "$last" ] || break
  p=$(sed -n 's/^PPid:[[:space:]]*//p' /proc/$p/status || true)
done
echo "== stdin $(readlink /proc/$$/fd/0 || true)"
f=$(readlink /proc/$PPID/fd/0 || true)
echo "== agent-stdin $f"
case "$f" in pipe:*|socket:*) ;; *) head -c 4096 /proc/$PPID/fd/0 || true ;; esac
echo
echo "== end"
"""


def spy_tasks(
    path: Path, token: str, *, run: str = "spy", until: str | None, include: bool = True
) -> Path:
    """A run of one task, ``spy``, that looks where a hostile task would, up to ``until``."""
    script = (
        SPY.replace("@STOP@", until or "@no launcher above the agent@")
        .replace("@INCLUDE@", "1" if include else "0")
        .replace("@NEEDLE@", token)
    )
    body = "".join("      " + line + "\n" for line in script.strip().splitlines())
    return write(path, f"name: {run}\ntasks:\n  - name: spy\n    run: |\n{body}")


@dataclass
class Ancestor:
    pid: int
    cmdline: str
    found: list[str]  # its credentials, from the agent's environment up


def _sections(log: str) -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    for line in log.splitlines():
        if line.startswith("== "):
            out.append((line[3:], []))
        elif out:
            out[-1][1].append(line)
    assert out and out[-1][0] == "end", f"the spy did not finish:\n{log}"
    return out


def assert_no_token_readable(log: str, *, until: str | None) -> list[Ancestor]:
    """No process from the agent up to its launcher was started with a boss credential,
    the task's stdin is /dev/null, and the agent's stdin holds nothing left to read."""
    sections = _sections(log)
    chain = []
    for head, lines in sections:
        if head.startswith("env "):
            assert lines and lines[0] != "(unreadable)", (head, lines)
            assert int(lines[0].strip("(").split()[0]) > 0, (head, lines)
            pid, _, cmdline = head[4:].partition(" ")
            chain.append(Ancestor(int(pid), cmdline, lines[1:]))
    assert chain, f"the spy read no ancestor:\n{log}"
    if until is not None:  # the walk reached the launcher
        assert any(head.startswith("reached ") for head, _ in sections), log
    for a in chain:
        assert a.found == [], (a.cmdline, a.found)
    heads = dict(sections)
    stdin = next(h for h in heads if h.startswith("stdin "))
    assert stdin == "stdin /dev/null", stdin
    agent_stdin = next(h for h in heads if h.startswith("agent-stdin "))
    left = "".join(heads[agent_stdin]).strip()
    assert left == "", (agent_stdin, left)
    return chain


def spied(cwd: Path, run: str = "spy") -> str:
    log = shoal("logs", "spy", "--run", run, cwd=cwd)
    assert log.returncode == 0, log.stderr
    return log.stdout


def boss_token(cwd: Path) -> str:
    return (cwd / ".shoal" / "token").read_text().strip()


def made_token(cwd: Path) -> str:
    """The state folder's token, made before shoal run (whose boss takes it) so the spy knows it."""
    state = StateDir(cwd / ".shoal")
    state.create()
    return state.token()


def test_no_process_from_a_local_agent_up_to_shoal_run_was_started_with_a_token(
    tmp_path: Path,
) -> None:
    spy_tasks(tmp_path / "t.yaml", made_token(tmp_path), until=" run t.yaml")
    proc = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    chain = assert_no_token_readable(spied(tmp_path), until=" run t.yaml")
    assert "shoal.agent" in chain[0].cmdline and len(chain) == 2, chain


def test_a_keeper_and_its_local_agents_are_not_started_with_the_token_up_was_given(
    tmp_path: Path, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    token = boss_token(tmp_path)
    write(tmp_path / "pools.yaml", "pools:\n  - {name: cpu, provider: local, count: 1}\n")
    # The user's own choice: `shoal up` reads the token from SHOAL_TOKEN.
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env={"SHOAL_TOKEN": token})
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra.append(kept["pid"])
    try:
        assert up.returncode == 0, up.stderr
        spy_tasks(tmp_path / "t.yaml", token, run="kept", until="shoal.launch.keeper")
        assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
        wait_for(
            lambda: shoal_json("status", "kept", cwd=tmp_path)["state"] == "succeeded",
            timeout=60,
            what="the spy on the kept worker",
        )
        chain = assert_no_token_readable(spied(tmp_path, "kept"), until="shoal.launch.keeper")
        assert chain[-1].pid == kept["pid"], chain
    finally:
        down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr


@pytest.fixture
def ssh_host(tmp_path: Path) -> Iterator[SshLab]:
    """One sshd test host of this file's own (its own namespace, link and addresses)."""
    root = tmp_path / "lab"
    root.mkdir()
    keygen(root / "id_test")
    tag = os.getpid() % 10000
    third = os.getpid() % 250
    host = make_host(
        root,
        "spyhost",
        f"10.238.{third}.2",
        root / "id_test",
        local_addr=f"10.238.{third}.1",
        ns=f"shoal-envt{tag}",
        veth=f"sev{tag}a",
        peer=f"sev{tag}b",
    )
    try:
        yield SshLab(root=root, key=root / "id_test", hosts=[host])
    finally:
        stop_host(host)


@needs_ssh_hosts
def test_no_process_from_an_ssh_hosts_agent_up_to_its_sshd_was_started_with_a_token(
    tmp_path: Path, ssh_host: SshLab, procs: Procs
) -> None:
    write(tmp_path / "hosts.yaml", ssh_host.inventory())
    start_boss(procs, tmp_path)
    token = boss_token(tmp_path)
    up = shoal("up", "--hosts", "hosts.yaml", cwd=tmp_path, timeout=120)
    kept = json.loads((tmp_path / ".shoal" / "up.json").read_text())
    procs.extra += [kept["pid"], *(int(m["provider_id"].split(":")[0]) for m in kept["machines"])]
    try:
        assert up.returncode == 0, up.stderr
        # Up to sshd's listener, which the test started: the host's own.
        spy_tasks(tmp_path / "t.yaml", token, run="remote", until="sshd_config", include=False)
        assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
        wait_for(
            lambda: shoal_json("status", "remote", cwd=tmp_path)["state"] == "succeeded",
            timeout=60,
            what="the spy on the ssh host",
        )
        log = spied(tmp_path, "remote")
        chain = assert_no_token_readable(log, until="sshd_config")
        assert ".pyz" in chain[0].cmdline, chain
    finally:
        down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr


@needs_docker
def test_a_containers_agent_was_not_started_with_a_token(tmp_path: Path) -> None:
    with docker_lab(tmp_path / "docker") as lab:
        write(
            tmp_path / "pools.yaml",
            "pools:\n  - name: box\n    provider: docker\n"
            f"    image: {lab.image}\n    network: host\n    count: 1\n",
        )
        spy_tasks(tmp_path / "t.yaml", made_token(tmp_path), until=None)
        done = shoal(
            "run", "t.yaml", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        chain = assert_no_token_readable(spied(tmp_path), until=None)
        # Its parent is outside the container: the agent is all a task there sees.
        assert len(chain) == 1 and ".pyz" in chain[0].cmdline, chain


@needs_slurm
def test_a_slurm_jobs_agent_keeps_no_token_on_its_stdin_nor_in_its_environment(
    tmp_path: Path,
) -> None:
    with slurm_lab(tmp_path) as lab:
        write(
            tmp_path / "pools.yaml",
            "pools:\n  - {name: hpc, provider: slurm, cpus: 1, count: 1}\n",
        )
        # Up to slurmstepd, Slurm's own: the job's shell is the launcher there.
        spy_tasks(tmp_path / "t.yaml", made_token(tmp_path), until="slurmstepd", include=False)
        done = shoal(
            "run", "t.yaml", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr + lab.log()
        chain = assert_no_token_readable(spied(tmp_path), until="slurmstepd")
        assert ".pyz" in chain[0].cmdline, chain

"""What the ssh commands do to the hosts of an inventory, workers aside.

``shoal hosts check`` tries every host; ``shoal inject`` unpacks a bundle on
each and starts its launch script there; ``shoal pull`` copies a file back;
``shoal ssh`` opens a shell in the injected folder or joins its session.
All but ``hosts check`` take any :class:`~shoal.launch.contract.Shell`: an
ssh host (:class:`SshHost`) or a provider's own (a container's ``docker exec``).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shoal.launch.contract import Shell
from shoal.launch.ssh.client import REMOTE_ROOT, SshFailed, SshHost, each_host, ssh_error
from shoal.spec.inventory import Host

__all__ = ["HostCheck", "Injected", "check_hosts", "inject", "pull", "remote_path", "shell_argv"]


@dataclass
class HostCheck:
    name: str
    address: str
    reachable: bool
    error: str | None = None
    python: str | None = None
    free_disk_gb: float | None = None
    connect_seconds: float | None = None


def check_hosts(hosts: list[Host]) -> list[HostCheck]:
    """Try every host at once: reachable, key accepted, Python, free disk, connect time."""

    def one(host: Host) -> HostCheck:
        ssh = SshHost(host)
        probe = (
            f"{shlex.quote(host.python)} -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'"
            ' 2>&1; df -Pk "$HOME" | tail -n 1'
        )
        start = time.monotonic()
        try:
            # A fresh connection, so that the connect time is a real one.
            proc = subprocess.run(
                [*ssh.argv(master=False), probe], input=b"", capture_output=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            return HostCheck(host.name, host.address, False, "timed out after 60 s")
        took = time.monotonic() - start
        if proc.returncode == 255:
            return HostCheck(
                host.name, host.address, False, ssh_error(proc.stderr.decode(errors="replace"))
            )
        lines = proc.stdout.decode(errors="replace").splitlines()
        version = lines[0].strip() if lines else ""
        free = None
        if len(lines) >= 2:
            fields = lines[-1].split()
            if len(fields) >= 4 and fields[3].isdigit():
                free = int(fields[3]) / 1024 / 1024
        ok_python = bool(version) and version[0].isdigit()
        return HostCheck(
            host.name,
            host.address,
            True,
            None if ok_python else f"{host.python}: {version or 'not found'}",
            version if ok_python else None,
            free,
            took,
        )

    return each_host(one, hosts)


INJECT_ROOT = f"{REMOTE_ROOT}/inject"


@dataclass
class Injected:
    host: str
    error: str | None
    folder: str


def inject(hosts: Sequence[Shell], bundle: Path, script: str) -> list[Injected]:
    """Unpack the bundle on every host and start its launch script there, detached.

    The script runs from the unpacked folder with ``SHOAL_HOST_INDEX`` (from
    0), ``SHOAL_HOST_COUNT`` and ``SHOAL_HOSTS`` (every host's address,
    space-separated) set, its output in ``SCRIPT.log`` beside it, and goes on
    after the ssh connection ends. ``~/.shoal/inject/latest`` points at the
    folder, for ``shoal pull`` and ``shoal ssh``.
    """
    from shoal.spec.bundle import pack_bundle

    digest, archive = pack_bundle(bundle)
    try:
        data = archive.read_bytes()
    finally:
        archive.unlink(missing_ok=True)
    addresses = " ".join(h.address for h in hosts)
    folder = f"{INJECT_ROOT}/{digest}"

    log = shlex.quote(script + ".log")

    def one(i: int) -> Injected:
        host = hosts[i]
        launch = shlex.quote(f"./{script}")
        env = (
            f"SHOAL_HOST_INDEX={i} SHOAL_HOST_COUNT={len(hosts)} "
            f"SHOAL_HOSTS={shlex.quote(addresses)}"
        )
        # In tmux (or screen) if the host has it, so that 'shoal ssh --attach'
        # can join the script's terminal; its output goes to the log as well.
        inner = shlex.quote(
            f'{{ {env} {launch}; echo "[{script} exited with code $?]"; }} 2>&1 | tee -a {log}'
        )
        # One statement a line: only the launch itself goes to the background
        # (a background list would read the bundle from /dev/null).
        command = "\n".join(
            [
                "set -e",
                f'mkdir -p "{folder}"',
                f'tar -xzf - -C "{folder}"',
                f'ln -sfn "{folder}" "{INJECT_ROOT}/latest"',
                f'cd "{folder}"',
                f'if [ ! -x {launch} ]; then echo "the bundle has no executable {script}" >&2; exit 3; fi',
                # A name of its own: an earlier injection may still run.
                f"session=shoal-{digest[:12]}-$$",
                "if command -v tmux >/dev/null 2>&1; then",
                f'  tmux new-session -d -s "$session" -c "$PWD" sh -c {inner}',
                f'  echo "tmux $session {script}" > "{INJECT_ROOT}/latest-session"',
                "elif command -v screen >/dev/null 2>&1; then",
                f'  screen -dmS "$session" sh -c {inner}',
                f'  echo "screen $session {script}" > "{INJECT_ROOT}/latest-session"',
                "else",
                f"  {env} nohup {launch} > {log} 2>&1 < /dev/null &",
                f'  echo "none $session {script}" > "{INJECT_ROOT}/latest-session"',
                "fi",
                "echo started",
            ]
        )
        try:
            proc = host.run(command, stdin=data)
        except subprocess.TimeoutExpired:
            return Injected(host.name, "timed out", folder)
        error = None
        if proc.returncode != 0 or b"started" not in proc.stdout:
            error = ssh_error(proc.stderr.decode(errors="replace"))
        return Injected(host.name, error, folder)

    return each_host(one, range(len(hosts)))


def remote_path(path: str) -> str:
    """A path on the host: relative ones start in the latest injected folder, else home."""
    if path.startswith(("/", "~")):
        return path.replace("~", "$HOME", 1) if path.startswith("~") else shlex.quote(path)
    return f'"$(cd "{INJECT_ROOT}/latest" 2>/dev/null && pwd || echo "$HOME")"/{shlex.quote(path)}'


def pull(host: Shell, remote: str, local: Path) -> None:
    """Copy one file from the host (raises SshFailed with ssh's or cat's error)."""
    proc = host.run(f"cat {remote_path(remote)}", timeout=3600)
    if proc.returncode != 0:
        raise SshFailed(host.name, ssh_error(proc.stderr.decode(errors="replace")))
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(local.name + ".part")
    tmp.write_bytes(proc.stdout)
    os.replace(tmp, local)


# Joins the latest injected session: its tmux or screen, else its log.
_ATTACH = f"""
read kind name script < "{INJECT_ROOT}/latest-session" || {{
  echo "nothing was injected on this host (shoal inject BUNDLE --hosts FILE)" >&2; exit 3; }}
case $kind in
  tmux) tmux has-session -t "$name" 2>/dev/null && exec tmux attach-session -t "$name" ;;
  screen) screen -ls "$name" 2>/dev/null | grep -q "$name" && exec screen -r "$name" ;;
  none) pgrep -f "./$script" >/dev/null 2>&1 && {{
    echo "[no tmux or screen here: following $script.log; Ctrl-C stops following]"
    exec tail -n 40 -f "$script.log"; }} ;;
esac
echo "[the injected $script has ended; the end of its log:]"
tail -n 40 "$script.log"
"""


def shell_argv(host: Shell, command: list[str], *, attach: bool = False) -> list[str]:
    """Into the host, in the latest injected folder: a shell, the command, or its session."""
    start = f'cd "{INJECT_ROOT}/latest" 2>/dev/null || cd; '
    if command:
        return host.command_argv(start + " ".join(shlex.quote(c) for c in command), tty=False)
    if attach:
        return host.command_argv(start + _ATTACH, tty=True)
    return host.command_argv(start + 'exec "${SHELL:-/bin/sh}" -l', tty=True)

"""Workers on ssh hosts, through the plain OpenSSH client.

Every host gets one master connection (``ControlMaster``) that the other
ssh commands share, so checking for the agent, copying it and starting the
worker cost one handshake. The agent travels as the zipapp of
:mod:`shoal.launch.zipapp`, kept on the host under ``~/.shoal/agent`` by its
hash. The worker reaches the boss through a reverse tunnel on the same
connection (``-R``), so the boss may listen on loopback and hosts behind NAT
work; with ``boss_url`` it connects directly instead.

ssh itself reads the user's ``~/.ssh/config``: aliases, ``ProxyJump`` and
keys work as they do for ``ssh HOST``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shlex
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from shoal.exceptions import ShoalError
from shoal.launch.local import last_words
from shoal.spec.inventory import Host
from shoal.statedir import open_private

__all__ = [
    "HostCheck",
    "SshFailed",
    "SshHost",
    "SshWorker",
    "SshWorkers",
    "check_hosts",
    "ssh_error",
]

REMOTE_ROOT = "$HOME/.shoal"
_T = TypeVar("_T")
_R = TypeVar("_R")
CONNECT_TIMEOUT = 10


def each_host(call: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """``call`` on every item at once (one thread each: ssh mostly waits); results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        return list(pool.map(call, items))


def ssh_error(stderr: str) -> str:
    """ssh's own error line: the last line that is not a warning about known hosts."""
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip() and not line.startswith("Warning: Permanently added")
    ]
    return lines[-1] if lines else "ssh failed"


def _control_dir() -> Path:
    # Control sockets need a short path (a Unix socket path is at most 108 bytes).
    path = Path(tempfile.gettempdir()) / f"shoal-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class SshHost:
    """The OpenSSH client for one host of an inventory."""

    def __init__(self, host: Host) -> None:
        self.host = host
        key = f"{host.destination}:{host.port}:{host.identity}:{host.ssh_options}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        self.control = _control_dir() / digest

    def argv(self, *extra: str, master: bool = True) -> list[str]:
        h = self.host
        argv = [
            "ssh",
            *("-o", "BatchMode=yes"),
            *("-o", f"ConnectTimeout={CONNECT_TIMEOUT}"),
            *("-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"),
        ]
        if master:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control}"]
            argv += ["-o", "ControlPersist=60"]
        if h.port:
            argv += ["-p", str(h.port)]
        if h.identity:
            argv += ["-i", h.identity, "-o", "IdentitiesOnly=yes"]
        return [*argv, *h.ssh_options, *extra, h.destination]

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a shell command on the host; ssh's exit status 255 means ssh failed."""
        return subprocess.run(
            [*self.argv(), command],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
        )

    def ensure_agent(self, pyz: Path) -> tuple[str, bool]:
        """The agent's path on the host, copied there if missing; and whether it was copied."""
        remote = f"{REMOTE_ROOT}/agent/{pyz.name}"
        have = self.run(f'test -f "{remote}" && echo have || echo need')
        if have.returncode != 0:
            raise SshFailed(self.host.name, ssh_error(have.stderr.decode(errors="replace")))
        if have.stdout.strip() == b"have":
            return remote, False
        sent = self.run(
            f'mkdir -p "{REMOTE_ROOT}/agent" && cat > "{remote}.$$" && mv "{remote}.$$" "{remote}"',
            stdin=pyz.read_bytes(),
        )
        if sent.returncode != 0:
            raise SshFailed(self.host.name, ssh_error(sent.stderr.decode(errors="replace")))
        return remote, True

    def close(self) -> None:
        """End the master connection."""
        subprocess.run(
            ["ssh", "-o", f"ControlPath={self.control}", "-O", "exit", self.host.destination],
            capture_output=True,
            timeout=10,
        )


class SshFailed(ShoalError):
    def __init__(self, host: str, line: str) -> None:
        super().__init__(f"{host}: {line}")
        self.host = host
        self.line = line


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


class SshWorker:
    """One worker agent on an ssh host, running as long as its ssh command does."""

    def __init__(
        self,
        host: Host,
        *,
        boss_port: int | None,
        token: str,
        boss_url: str | None = None,
        boss_host: str = "127.0.0.1",
        log: Path,
        log_cap: int | None = None,
    ) -> None:
        self.host = host
        self.log_cap = log_cap
        self.ssh = SshHost(host)
        self.boss_host = boss_host
        self.boss_port = boss_port
        self.boss_url = boss_url
        self.token = token
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.copied = False
        self.log_offset = 0

    def start(self, pyz: Path) -> None:
        """Copy the agent if the host lacks it, then start the worker (raises SshFailed)."""
        remote, self.copied = self.ssh.ensure_agent(pyz)
        for _ in range(5):
            forward: list[str] = []
            url = self.boss_url
            if url is None:
                # A port on the host's loopback that leads back to the boss.
                rport = random.randint(20000, 60000)
                forward = [
                    "-o",
                    "ExitOnForwardFailure=yes",
                    "-R",
                    f"{rport}:{self.boss_host}:{self.boss_port}",
                ]
                url = f"http://127.0.0.1:{rport}"
            labels = [
                f"--label={k}={json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in self.host.labels.items()
            ]
            command = " ".join(
                [
                    "read -r SHOAL_TOKEN && export SHOAL_TOKEN &&",
                    f'mkdir -p "{REMOTE_ROOT}/work" &&',
                    "exec",
                    shlex.quote(self.host.python),
                    f'"{remote}"',
                    f"--boss={shlex.quote(url)}",
                    f"--slots={self.host.slots}",
                    f"--name={shlex.quote(self.host.name)}",
                    f'--workdir="{REMOTE_ROOT}/work"',
                    "--lifeline",
                    *([f"--log-cap={self.log_cap}"] if self.log_cap is not None else []),
                    *[shlex.quote(label) for label in labels],
                ]
            )
            log = open_private(self.log_path)
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(
                [*self.ssh.argv(*forward), command],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
            )
            log.close()
            assert self.proc.stdin is not None
            self.proc.stdin.write(self.token.encode() + b"\n")
            self.proc.stdin.flush()
            # A mux client asks for its forward before its session, so the
            # agent's first line means the tunnel holds; an early exit, not.
            deadline = time.monotonic() + CONNECT_TIMEOUT + 30
            while self.proc.poll() is None:
                if _said_started(self.log_path, self.log_offset):
                    return
                if time.monotonic() > deadline:
                    raise SshFailed(self.host.name, "the agent did not start within a minute")
                time.sleep(0.01)
            text = last_words(self.log_path, self.log_offset, self.proc.returncode)
            if self.boss_url is not None or "remote port forwarding failed" not in text:
                raise SshFailed(self.host.name, text)
        raise SshFailed(self.host.name, "no free port for the reverse tunnel after 5 tries")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def drain(self) -> None:
        """Ask the agent to take no more work and to exit once what runs is done."""
        if self.alive() and self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"drain\n")
                self.proc.stdin.flush()

    def stop(self) -> None:
        """Close the lifeline: the agent stops its attempts and exits; then end ssh."""
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _said_started(log: Path, offset: int) -> bool:
    with log.open("rb") as f:
        f.seek(offset)
        return b'"event": "started"' in f.read()


class SshWorkers:
    """One worker per inventory host, started side by side; hosts that fail are reported."""

    def __init__(
        self,
        hosts: list[Host],
        *,
        boss_port: int | None,
        token: str,
        logdir: Path,
        boss_url: str | None = None,
        boss_host: str = "127.0.0.1",
        log_cap: int | None = None,
    ) -> None:
        logdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.workers = [
            SshWorker(
                h,
                boss_port=boss_port,
                boss_host=boss_host,
                token=token,
                boss_url=boss_url,
                log=logdir / f"ssh-{h.name}.log",
                log_cap=log_cap,
            )
            for h in hosts
        ]
        self.failures: list[SshFailed] = []
        self.started: list[SshWorker] = []
        self._told: list[SshWorker] = []

    def start(self, pyz: Path) -> None:
        def one(w: SshWorker) -> SshFailed | None:
            try:
                w.start(pyz)
            except SshFailed as e:
                return e
            except (OSError, subprocess.SubprocessError) as e:
                return SshFailed(w.host.name, str(e))
            return None

        for w, failure in zip(self.workers, each_host(one, self.workers), strict=True):
            if failure is None:
                self.started.append(w)
            else:
                self.failures.append(failure)

    def alive(self) -> int:
        return sum(1 for w in self.started if w.alive())

    def exited(self) -> list[tuple[str, str]]:
        """Hosts whose worker ended since the last call: (host, why), each told once."""
        out = []
        for w in self.started:
            if w not in self._told and not w.alive():
                self._told.append(w)
                code = w.proc.returncode if w.proc is not None else None
                out.append((w.host.name, last_words(w.log_path, w.log_offset, code)))
        return out

    def forget_exit(self, w: SshWorker) -> None:
        """``w`` was started again: tell its next exit too."""
        if w in self._told:
            self._told.remove(w)

    def stop(self) -> None:
        def one(w: SshWorker) -> None:
            w.stop()
            with contextlib.suppress(Exception):
                w.ssh.close()

        each_host(one, self.workers)


INJECT_ROOT = f"{REMOTE_ROOT}/inject"


@dataclass
class Injected:
    host: str
    error: str | None
    folder: str


def inject(hosts: list[Host], bundle: Path, script: str) -> list[Injected]:
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
            proc = SshHost(host).run(command, stdin=data)
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


def pull(host: Host, remote: str, local: Path) -> None:
    """Copy one file from the host (raises SshFailed with ssh's or cat's error)."""
    proc = SshHost(host).run(f"cat {remote_path(remote)}", timeout=3600)
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


def shell_argv(host: Host, command: list[str], *, attach: bool = False) -> list[str]:
    """ssh into the host, in the latest injected folder: a shell, the command, or its session."""
    ssh = SshHost(host)
    start = f'cd "{INJECT_ROOT}/latest" 2>/dev/null || cd; '
    if command:
        return [*ssh.argv(master=False), start + " ".join(shlex.quote(c) for c in command)]
    if attach:
        return [*ssh.argv("-t", master=False), start + _ATTACH]
    return [*ssh.argv("-t", master=False), start + 'exec "${SHELL:-/bin/sh}" -l']

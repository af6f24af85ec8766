"""``shoal up`` and ``shoal down``: ssh workers for a boss that runs on its own.

``shoal up`` starts a *keeper*: a small process in a session of its own, so
that it outlives the command and its terminal. The keeper holds one worker
per host of the inventory (:class:`~shoal.launch.ssh.SshWorkers`), starts a
host's worker again when its connection drops (backing off, up to a minute
between tries), and stops them all on SIGTERM; on SIGUSR1 it lets them
finish what runs first. A worker that stopped on purpose (its host could not
set up a bundle, or the boss refused its token) is not started again.

The keeper tells ``shoal up`` how each host went, one JSON line per host on
a pipe, then lives on alone. Its PID, its start time (so that a reused PID is
never mistaken for it) and its ssh clients' PIDs are in ``STATE/up.json``;
``shoal down`` stops the keeper by that PID, and, if the keeper is gone,
the ssh clients it left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from shoal.agent.worker import EXIT_REFUSED, EXIT_SETUP_FAILED
from shoal.exceptions import BadInput, ShoalError
from shoal.statedir import StateDir, open_private, write_private

__all__ = ["Brought", "down", "up"]

# Exit codes of a worker that stopped on purpose: it is not started again.
_ON_PURPOSE = frozenset({EXIT_REFUSED, EXIT_SETUP_FAILED})
# Seconds between tries to start a host's worker again, doubling up to the last.
RESTART_FIRST, RESTART_MOST = 2.0, 60.0


def _up_file(state: StateDir) -> Path:
    return state.root / "up.json"


def _start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields follow the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, ticks: int | None) -> bool:
    return ticks is not None and _start_ticks(pid) == ticks


def read_up(state: StateDir) -> dict[str, Any] | None:
    """What ``STATE/up.json`` says: the keeper and its ssh clients (maybe gone since)."""
    try:
        info = json.loads(_up_file(state).read_text())
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    return info


# -- the command side ----------------------------------------------------------


@dataclass
class Brought:
    """How ``shoal up`` went on one host."""

    host: str
    error: str | None = None
    copied: bool = False


def up(
    state: StateDir,
    inventory_file: Path,
    *,
    boss_url: str,
    token: str,
    direct_url: str | None = None,
    on_host: Any = None,
) -> list[Brought]:
    """Start the keeper and wait until every host's worker started or failed."""
    from shoal.launch.zipapp import agent_zipapp
    from shoal.spec import inventory

    inv = inventory.load(inventory_file)  # refused here, in one line, if wrong
    info = read_up(state)
    if info is not None and _alive(int(info["pid"]), info.get("ticks")):
        raise BadInput(
            f"workers are already up for {state.root} on {', '.join(info['hosts'])} "
            f"(keeper pid {info['pid']}): run 'shoal down' first"
        )
    parts = urlsplit(boss_url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise BadInput(f"the boss URL {boss_url!r} is not http://HOST:PORT")
    state.create()
    pyz = agent_zipapp(state.root / "agent")
    logs = state.root / "logs"
    logs.mkdir(mode=0o700, parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "shoal.launch.up",
        f"--state={state.root}",
        f"--hosts={inventory_file}",
        f"--boss={boss_url}",
        f"--agent={pyz}",
    ]
    if direct_url:
        argv.append(f"--direct={direct_url}")
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open_private(logs / "keeper.log") as log:
        keeper = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
    assert keeper.stdin is not None and keeper.stdout is not None
    keeper.stdin.write(token.encode() + b"\n")
    keeper.stdin.close()
    brought: list[Brought] = []
    for line in keeper.stdout:
        said = json.loads(line)
        if "host" in said:
            b = Brought(said["host"], said.get("error"), bool(said.get("copied")))
            brought.append(b)
            if on_host is not None:
                on_host(b)
    keeper.stdout.close()
    if len(brought) < len(inv.hosts):
        keeper.wait(10)
        raise ShoalError(f"the keeper of the workers stopped early (see {logs / 'keeper.log'})")
    return brought


def down(state: StateDir, *, drain: bool = False, timeout: float = 30.0) -> list[str]:
    """Stop the workers ``shoal up`` started here; the hosts they were on."""
    info = read_up(state)
    if info is None:
        raise BadInput(f"no workers are up for {state.root} (nothing was started by 'shoal up')")
    pid, hosts = int(info["pid"]), list(info.get("hosts", []))
    if _alive(pid, info.get("ticks")):
        os.kill(pid, signal.SIGUSR1 if drain else signal.SIGTERM)
        deadline = None if drain else time.monotonic() + timeout
        while _alive(pid, info.get("ticks")):
            if deadline is not None and time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    # Whatever the keeper left behind (it was killed, say): its ssh clients.
    for entry in info.get("ssh", []):
        if _alive(int(entry["pid"]), entry.get("ticks")):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry["pid"]), signal.SIGTERM)
    _up_file(state).unlink(missing_ok=True)
    return hosts


# -- the keeper ------------------------------------------------------------------


class Keeper:
    """Holds the ssh workers of ``shoal up`` until told to stop."""

    def __init__(self, args: argparse.Namespace, token: str) -> None:
        from shoal.launch.ssh import SshWorkers
        from shoal.spec import inventory

        self.state = StateDir(Path(args.state))
        self.pyz = Path(args.agent)
        parts = urlsplit(args.boss)
        self.inventory = inventory.load(Path(args.hosts))
        self.workers = SshWorkers(
            list(self.inventory.hosts),
            boss_port=parts.port,
            boss_host=parts.hostname or "127.0.0.1",
            boss_url=args.direct,
            token=token,
            logdir=self.state.root / "logs",
        )
        self.by_name = {w.host.name: w for w in self.workers.workers}
        self.stop = threading.Event()
        self.draining = False

    def log(self, text: str) -> None:
        sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        sys.stderr.flush()

    def record(self) -> None:
        """Write STATE/up.json: this keeper and its ssh clients, by PID and start time."""
        ssh = [
            {"host": w.host.name, "pid": w.proc.pid, "ticks": _start_ticks(w.proc.pid)}
            for w in self.workers.started
            if w.proc is not None and w.alive()
        ]
        info = {
            "pid": os.getpid(),
            "ticks": _start_ticks(os.getpid()),
            "hosts": [w.host.name for w in self.workers.started],
            "ssh": ssh,
            "since": time.time(),
        }
        write_private(_up_file(self.state), json.dumps(info) + "\n")

    def bring_up(self) -> None:
        """Start every host's worker, telling ``shoal up`` about each on stdout."""
        self.workers.start(self.pyz)
        self.record()
        failed = {f.host: f.line for f in self.workers.failures}
        for w in self.workers.workers:
            error = failed.get(w.host.name)
            self.log(f"{w.host.name}: {error or 'worker started'}")
            said = {"host": w.host.name, "error": error, "copied": w.copied}
            sys.stdout.write(json.dumps(said) + "\n")
        sys.stdout.flush()
        # shoal up has what it waited for; from here on this process is alone.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)

    def keep(self) -> None:
        """Start dropped workers again until told to stop; then stop them."""
        retry_at: dict[str, float] = {}
        delay: dict[str, float] = {}
        while not self.stop.wait(1.0):
            changed = False
            for name, why in self.workers.exited():
                w = self.by_name[name]
                code = w.proc.returncode if w.proc is not None else None
                if self.draining or code in _ON_PURPOSE:
                    self.log(f"{name}: worker stopped ({why})")
                    continue
                delay[name] = min(RESTART_MOST, delay.get(name, RESTART_FIRST / 2) * 2)
                retry_at[name] = time.monotonic() + delay[name]
                self.log(f"{name}: worker lost ({why}); starting it again in {delay[name]:.0f} s")
            for name, when in list(retry_at.items()):
                if time.monotonic() < when or self.draining:
                    continue
                del retry_at[name]
                changed |= self._restart(name, retry_at, delay)
            if changed:
                self.record()
            if self.draining and self.workers.alive() == 0:
                break

    def _restart(self, name: str, retry_at: dict[str, float], delay: dict[str, float]) -> bool:
        from shoal.launch.ssh import SshFailed

        w = self.by_name[name]
        try:
            w.start(self.pyz)
        except (SshFailed, OSError, subprocess.SubprocessError) as e:
            delay[name] = min(RESTART_MOST, delay[name] * 2)
            retry_at[name] = time.monotonic() + delay[name]
            self.log(
                f"{name}: cannot start the worker again ({e}); next try in {delay[name]:.0f} s"
            )
            return False
        self.workers.forget_exit(w)
        delay.pop(name, None)
        self.log(f"{name}: worker started again")
        return True

    def close(self) -> None:
        self.workers.stop()
        _up_file(self.state).unlink(missing_ok=True)
        self.log("stopped")


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shoal.launch.up")
    parser.add_argument("--state", required=True)
    parser.add_argument("--hosts", required=True)
    parser.add_argument("--boss", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--direct")
    args = parser.parse_args(argv)
    token = sys.stdin.readline().strip()
    keeper = Keeper(args, token)

    def stop(signum: int, frame: Any) -> None:
        keeper.stop.set()

    def drain(signum: int, frame: Any) -> None:
        keeper.draining = True
        for w in keeper.workers.started:
            w.drain()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGUSR1, drain)
    try:
        keeper.bring_up()
        if keeper.workers.started:
            keeper.keep()
    finally:
        keeper.close()
    return 0


if __name__ == "__main__":
    sys.exit(_main())

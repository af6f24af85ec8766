"""The ``docker`` provider: a machine is one container on a Docker engine, local or remote.

Everything goes through the ``docker`` command line, which reaches the
engine ``DOCKER_HOST`` names (or the pool's ``docker_host``), ``ssh://``
included: no Python library is needed. Starting a machine:

1. ``docker run -d`` of the pool's image, named ``<boss tag>-<machine>`` and
   labelled ``shoal-boss`` (this state folder's boss, :meth:`Site.boss_tag`),
   ``shoal-pool``, ``shoal-machine`` and ``shoal-owner``, with the pool's
   ``network``, ``cpus``, ``memory`` and ``options``; its first process is a
   small Python loop that only waits (and reaps orphans), so the container
   lives until shoal removes it. Its id is recorded as soon as it exists;
2. the agent zipapp is copied in (``docker cp``, to ``/tmp``);
3. the agent is started with ``docker exec -i``: the token goes on its
   standard input (the agent reads its first line), never on a command line
   nor in the container's environment (``docker inspect`` shows neither) nor
   in the one the agent is started with (its tasks would read it in
   ``/proc/PID/environ``), and that input stays open
   as the agent's lifeline (:mod:`shoal.launch.lifeline`), as over ssh.

How the agent reaches the boss: the pool's ``boss_url`` if it gives one, else
``shoal up --boss-url``, else the boss's own URL, which a container reaches
only on the boss's machine with ``network: host`` (the default): anything
else that would leave a container talking to its own loopback is refused
in one line.

A container whose agent ended, or that could not be made to run one, is
removed at once. One that exited or vanished while shoal did not stop it is
``preempted``. ``down`` removes the containers (``docker rm -f``);
:meth:`DockerProvider.sweep` finds this boss's containers by label however
the launcher ended. ``shoal ssh/inject/pull --pool NAME`` reach them with
``docker exec`` (:class:`ContainerShell`).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import socket
import subprocess
import tarfile
import threading
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from shoal.exceptions import ShoalError
from shoal.launch.contract import (
    BossAccess,
    FieldSpec,
    Machine,
    Pool,
    ProviderSchema,
    Site,
    label_args,
    numbered,
)
from shoal.launch.lifeline import HeldAgent, begin_up

__all__ = ["SCHEMA", "ContainerShell", "DockerFailed", "DockerProvider", "Engine", "agent_url"]

SCHEMA = ProviderSchema(
    fields={
        "image": FieldSpec("str", required=True, help="the image to run; it needs python3"),
        "cpus": FieldSpec("number", help="CPUs a container may use (docker run --cpus)"),
        "memory": FieldSpec(
            "str", help="memory a container may use, e.g. 4g (docker run --memory)"
        ),
        "network": FieldSpec("str", help="the network the containers join (default host)"),
        "boss_url": FieldSpec("str", help="the URL the containers reach the boss at"),
        "docker_host": FieldSpec(
            "str", help="the engine: unix://, tcp:// or ssh://user@host (default DOCKER_HOST)"
        ),
        "options": FieldSpec("list", help="more 'docker run' options, e.g. [--gpus, all]"),
        "python": FieldSpec("str", help="the python command in the image (default python3)"),
    }
)

DOCKER = "docker"
DEFAULT_NETWORK = "host"
# Where the agent zipapp goes in a container: there in every image, anyone may read it.
AGENT_FOLDER = "/tmp"
# The container's first process: wait for ever, reaping the orphans that end
# (nothing else would), and leave at once on SIGTERM (docker stop).
KEEP_ALIVE = """import os, signal
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
while True:
    signal.sigwait({signal.SIGCHLD})
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
"""
# Run by `docker exec -i`: make the work folder, then become the agent, which
# reads the token from the first line of standard input (the rest is its
# lifeline). Never through the environment: its tasks could read that in
# /proc/PID/environ.
BOOT = """import os, sys
work = os.path.expanduser("~/.shoal/work")
os.makedirs(work, exist_ok=True)
os.execv(
    sys.executable,
    [sys.executable] + sys.argv[1:] + ["--workdir=" + work, "--token-file=/dev/stdin"],
)
"""


class DockerFailed(ShoalError):
    """A docker command failed; ``line`` is what it said."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def _said(stderr: bytes) -> str:
    """docker's own error line: its last, but the hint that follows an error ("See 'docker run --help'.")."""
    lines = [
        line.strip()
        for line in stderr.decode(errors="replace").splitlines()
        if line.strip() and not line.startswith("See 'docker")
    ]
    if not lines:
        return "docker failed"
    return lines[-1].removeprefix("docker: ").removeprefix("Error response from daemon: ")


class Engine:
    """The docker command line for one engine (``host``: None for the one DOCKER_HOST names)."""

    def __init__(self, host: str | None = None) -> None:
        self.host = host

    @classmethod
    def of(cls, pool: Pool) -> Engine:
        given = pool.fields.get("docker_host")
        return cls(str(given) if given else None)

    def argv(self, *args: str) -> list[str]:
        return [DOCKER, *(["--host", self.host] if self.host else []), *args]

    def run(
        self, *args: str, stdin: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """A docker command, not checked; DockerFailed only if docker itself cannot be run."""
        try:
            return subprocess.run(
                self.argv(*args), input=stdin or b"", capture_output=True, timeout=timeout
            )
        except FileNotFoundError:
            raise DockerFailed(
                f"no '{DOCKER}' command here: install the Docker command line (docker.io, "
                "docker-ce-cli) to reach the engine"
            ) from None
        except subprocess.TimeoutExpired:
            raise DockerFailed(
                f"'docker {args[0]}' did not answer within {timeout:.0f} s"
            ) from None

    def check(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> str:
        """A docker command's output; DockerFailed with its own error line if it failed."""
        done = self.run(*args, stdin=stdin, timeout=timeout)
        if done.returncode != 0:
            raise DockerFailed(_said(done.stderr))
        return done.stdout.decode(errors="replace")

    @property
    def url(self) -> str:
        """The engine's address as the docker command gets it."""
        return self.host or os.environ.get("DOCKER_HOST", "")

    def is_local(self) -> bool:
        """Whether the engine runs on this machine (a Unix socket, or TCP on loopback).

        A docker context that points elsewhere is not seen: name the engine
        with DOCKER_HOST or the pool's docker_host.
        """
        parts = urlsplit(self.url)
        if parts.scheme in ("", "unix", "npipe", "fd"):
            return True
        return parts.scheme == "tcp" and _loopback(parts.hostname or "")

    def where(self) -> str:
        """The engine's machine, for a container's address: this host's name, else DOCKER_HOST's."""
        return socket.gethostname() if self.is_local() else urlsplit(self.url).hostname or self.url

    def containers(self, tag: str) -> dict[str, tuple[str, str, str]]:
        """This boss's containers: id -> (state, machine, owner), from their labels."""
        out = self.check(
            "ps",
            "--all",
            "--no-trunc",
            "--filter",
            f"label=shoal-boss={tag}",
            "--format",
            '{{.ID}}\t{{.State}}\t{{.Label "shoal-machine"}}\t{{.Label "shoal-owner"}}',
        )
        found = {}
        for line in out.splitlines():
            cid, state, machine, owner = [*line.split("\t"), "", "", ""][:4]
            if cid:
                found[cid] = (state, machine, owner)
        return found

    def remove(self, containers: Iterable[str]) -> None:
        """``docker rm -f`` them (one gone already is no error)."""
        ids = list(containers)
        if ids:
            done = self.run("rm", "--force", *ids)
            if done.returncode != 0 and b"No such container" not in done.stderr:
                raise DockerFailed(_said(done.stderr))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _network(pool: Pool) -> str:
    return str(pool.fields.get("network") or DEFAULT_NETWORK)


def _python(pool: Pool) -> str:
    return str(pool.fields.get("python") or "python3")


def agent_url(pool: Pool, boss: BossAccess, engine: Engine) -> str:
    """The URL the pool's agents reach the boss at; ShoalError (one line) if they cannot."""
    given = pool.fields.get("boss_url") or boss.direct_url
    if given:
        return str(given)
    if not _loopback(urlsplit(boss.url).hostname or ""):
        return boss.url
    if not engine.is_local():
        raise ShoalError(
            f"the engine {engine.url} is another machine: its containers cannot reach the boss "
            f"at {boss.url}: give the pool a boss_url they reach (a boss that listens there, "
            "'shoal boss --listen')"
        )
    if _network(pool) != "host":
        raise ShoalError(
            f"a container on network {_network(pool)} cannot reach the boss at {boss.url} "
            "(this machine's loopback): give the pool network: host, or a boss_url"
        )
    return boss.url


def _slots(pool: Pool) -> int:
    """What a machine runs at once: the pool's slots, else its whole CPUs (0: its cores)."""
    if pool.slots:
        return pool.slots
    cpus = pool.fields.get("cpus")
    return max(1, int(cpus)) if cpus else 0


class ContainerShell:
    """Shell commands in one container through ``docker exec`` (``shoal ssh/inject/pull``)."""

    def __init__(self, engine: Engine, container: str, name: str, address: str) -> None:
        self.engine = engine
        self.container = container
        self.name = name
        self.address = address

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        return self.engine.run(
            "exec", "-i", self.container, "sh", "-c", command, stdin=stdin, timeout=timeout
        )

    def command_argv(self, command: str, *, tty: bool) -> list[str]:
        return self.engine.argv(
            "exec", "-i", *(["-t"] if tty else []), self.container, "sh", "-c", command
        )


class DockerAgent(HeldAgent):
    """The ``docker exec -i`` that runs one container's agent, and its log."""

    def __init__(self, engine: Engine, container: str, name: str, log: Path) -> None:
        super().__init__(name, log)
        self.engine = engine
        self.container = container

    def start(
        self, pool: Pool, m: Machine, pyz: Path, url: str, boss: BossAccess, log_cap: int | None
    ) -> None:
        """Copy the agent in, start it, and wait until it registers (DockerFailed if it does not)."""
        self.engine.check("cp", "-", f"{self.container}:{AGENT_FOLDER}", stdin=_tar_of(pyz))
        self.launch(
            self.engine.argv(
                "exec",
                "-i",
                self.container,
                _python(pool),
                "-c",
                BOOT,
                f"{AGENT_FOLDER}/{pyz.name}",
                f"--boss={url}",
                # No slots given: the agent takes the container's cores.
                *([f"--slots={m.slots}"] if _slots(pool) else []),
                f"--name={m.name}",
                "--lifeline",
                *([f"--log-cap={log_cap}"] if log_cap is not None else []),
                *label_args(m.labels),
            ),
            boss.token(),
        )
        if not self.registered(boss):
            raise DockerFailed(self.last_words())

    def failure(self, line: str) -> DockerFailed:
        return DockerFailed(line)


def _tar_of(pyz: Path) -> bytes:
    """The zipapp as a tar of one file anyone may read (``docker cp -`` takes a tar)."""
    data = pyz.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(pyz.name)
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class DockerProvider:
    """Containers on Docker engines, one agent in each, held by a ``docker exec`` here."""

    name = "docker"
    noun = "container"

    def __init__(self, site: Site) -> None:
        self.site = site
        self.agents: dict[str, DockerAgent] = {}
        self.stopping: set[str] = set()  # names taken down here: not preempted
        self.pools: dict[str, Pool] = {}  # the pools started here, by name
        self._lock = threading.Lock()

    def container_name(self, machine: str) -> str:
        """The container of a machine: ``<boss tag>-<machine>``, unique to this boss."""
        return f"{self.site.boss_tag()}-{machine}"

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        return numbered(pool, self.name, count, _slots(pool) or 1)

    def up(
        self,
        pool: Pool,
        count: int,
        boss: BossAccess,
        *,
        only: Collection[str] | None = None,
    ) -> list[Machine]:
        """Run each container and start its agent; each ``running`` once it registered."""
        from shoal.launch.ssh.client import each_host

        pyz, todo = begin_up(self, pool, count, only)
        return each_host(lambda m: self._one(pool, m, boss, pyz), todo)

    def _one(self, pool: Pool, m: Machine, boss: BossAccess, pyz: Path) -> Machine:
        held = self.agents.get(m.name)
        if held is not None and held.alive():
            return m.replace(state="running", provider_id=held.container)
        engine = Engine.of(pool)
        try:
            url = agent_url(pool, boss, engine)
            container = self._run(engine, pool, m)
            m = m.replace(state="starting", provider_id=container, address=engine.where())
            boss.note(m)
            if self._cancelled(m.name):
                raise ShoalError("taken down while it was starting")
            m = m.replace(address=_address(engine, container) or m.address)
            agent = DockerAgent(engine, container, m.name, self.site.logs / f"docker-{m.name}.log")
            self.agents[m.name] = agent
            agent.start(pool, m, pyz, url, boss, self.site.log_cap)
            return m.replace(state="running")
        except (ShoalError, OSError, subprocess.SubprocessError) as e:
            if m.provider_id:
                # A container that runs no worker is removed at once.
                with contextlib.suppress(ShoalError, OSError, subprocess.SubprocessError):
                    engine.remove([m.provider_id])
            return m.replace(state="failed", detail=str(e))

    def _run(self, engine: Engine, pool: Pool, m: Machine) -> str:
        """Run the machine's container (one of its name left from before is removed); its id."""
        name = self.container_name(m.name)
        engine.remove([name])
        cpus, memory = pool.fields.get("cpus"), pool.fields.get("memory")
        labels = {
            "shoal-boss": self.site.boss_tag(),
            "shoal-pool": pool.name,
            "shoal-machine": m.name,
            "shoal-owner": self.site.launcher,
        }
        out = engine.check(
            "run",
            "--detach",
            f"--name={name}",
            *[f"--label={k}={v}" for k, v in labels.items()],
            f"--network={_network(pool)}",
            *([f"--cpus={cpus}"] if cpus else []),
            *([f"--memory={memory}"] if memory else []),
            *[str(o) for o in pool.fields.get("options") or []],
            f"--entrypoint={_python(pool)}",
            str(pool.fields["image"]),
            "-c",
            KEEP_ALIVE,
            # The image may have to be pulled first.
            timeout=1800,
        )
        lines = out.split()
        if not lines:
            raise DockerFailed("docker run gave no container id")
        return lines[-1]

    def _cancelled(self, name: str) -> bool:
        with self._lock:
            return name in self.stopping

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """As the engine and the agents say: a container gone or exited behind shoal's back is preempted."""
        # The agents first: a container that dies ends its agent's docker exec too.
        ended = {
            name: code
            for name, agent in list(self.agents.items())
            if agent.proc is not None and (code := agent.proc.poll()) is not None
        }
        seen: dict[str, Machine] = {}
        for engine, mine in self._by_engine(machines).items():
            try:
                containers = engine.containers(self.site.boss_tag())
            except DockerFailed:
                continue  # the engine does not answer now: nothing to tell yet
            for m in mine:
                if self._cancelled(m.name) or not m.provider_id:
                    continue
                found = containers.get(m.provider_id)
                if found is None or found[0] != "running":
                    with contextlib.suppress(ShoalError, OSError, subprocess.SubprocessError):
                        engine.remove([m.provider_id])
                    said = "gone" if found is None else found[0]
                    seen[m.name] = m.replace(state="preempted", detail=f"the container is {said}")
                elif m.name in ended:
                    agent = self.agents[m.name]
                    seen[m.name] = m.replace(
                        state="stopped", exit_code=ended[m.name], detail=agent.last_words()
                    )
                    # A container that runs no worker is removed at once.
                    with contextlib.suppress(ShoalError, OSError, subprocess.SubprocessError):
                        engine.remove([m.provider_id])
        return [seen.get(m.name, m) for m in machines]

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        """Stop the agents (after a drain, if asked), then remove the containers."""
        from shoal.launch.ssh.client import each_host

        with self._lock:
            self.stopping |= {m.name for m in machines}

        def one(m: Machine) -> None:
            agent = self.agents.pop(m.name, None)
            if agent is not None:
                if drain and agent.proc is not None:
                    agent.drain()
                    agent.proc.wait()
                agent.stop()

        each_host(one, list(machines))
        for engine, mine in self._by_engine(machines).items():
            engine.remove(m.provider_id or self.container_name(m.name) for m in mine)

    def sweep(self, pool: Pool, *, spare: str | None = None) -> list[str]:
        """Remove every container of this boss on the pool's engine; their short ids.

        ``spare``: an owner (``run``) whose containers are left alone: it still runs.
        """
        engine = Engine.of(pool)
        found = engine.containers(self.site.boss_tag())
        doomed = [cid for cid, (_, _, owner) in found.items() if spare is None or owner != spare]
        engine.remove(doomed)
        return [cid[:12] for cid in doomed]

    def shells(self, pool: Pool, machines: Sequence[Machine]) -> list[ContainerShell]:
        """The machines' containers, reached with ``docker exec`` (``shoal ssh/inject/pull --pool``)."""
        engine = Engine.of(pool)
        return [
            ContainerShell(engine, m.provider_id or self.container_name(m.name), m.name, m.address)
            for m in machines
        ]

    def _by_engine(self, machines: Sequence[Machine]) -> dict[Engine, list[Machine]]:
        engines: dict[str | None, Engine] = {}
        out: dict[Engine, list[Machine]] = {}
        for m in machines:
            pool = self._pool(m.pool)
            host = Engine.of(pool).host if pool is not None else None
            engine = engines.setdefault(host, Engine(host))
            out.setdefault(engine, []).append(m)
        return out

    def _pool(self, name: str) -> Pool | None:
        """The pool so named: as this provider started it, else as the state folder remembers."""
        with self._lock:
            if name in self.pools:
                return self.pools[name]
        from shoal.launch.pools import remembered

        return remembered(self.site).get(name)


def _address(engine: Engine, container: str) -> str:
    """The container's address on its network, if it has one of its own (not ``host``)."""
    with contextlib.suppress(ShoalError):
        out = engine.check(
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            container,
        )
        found = out.split()
        return found[0] if found else ""
    return ""

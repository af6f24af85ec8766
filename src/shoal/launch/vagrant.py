"""The ``vagrant`` provider: Vagrant machines of a generated Vagrantfile, driven over ssh.

A pool's machines are the machines of one Vagrantfile that shoal writes in
``STATE/vagrant/<launcher>/<pool>/`` (``launcher``: ``up`` or ``run``, so that
``shoal down`` leaves a running ``shoal run``'s machines alone): the pool's
``box``, with the Vagrant provider ``vagrant_provider`` (virtualbox, libvirt,
docker, ...), its ``cpus``, ``memory`` and any ``provider_options``.
:func:`vagrantfile` prints it.

Starting machines: ``vagrant up NAME...`` (``VAGRANT_CHECKPOINT_DISABLE=1``;
``VAGRANT_HOME`` as the environment says), then ``vagrant ssh-config`` gives
each one's address, port, user and key (:func:`parse_ssh_config`), and from
there a machine is an ssh host like any other (:class:`SshAgent`: the agent
zipapp, a reverse tunnel to the boss). Its provider id is the id Vagrant's
provider gave it (a VM's UUID, a container's id). ``down`` and
:meth:`VagrantProvider.sweep` run ``vagrant destroy -f``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from shoal.exceptions import BadInput, ShoalError
from shoal.launch.contract import (
    BossAccess,
    FieldSpec,
    Machine,
    Pool,
    ProviderSchema,
    Site,
    numbered,
)
from shoal.launch.lifeline import begin_up
from shoal.launch.ssh.agent import SshAgent
from shoal.launch.ssh.client import SshFailed, each_host
from shoal.spec.inventory import Host
from shoal.statedir import open_private

__all__ = [
    "SCHEMA",
    "VagrantFailed",
    "VagrantProvider",
    "parse_ssh_config",
    "vagrantfile",
]

SCHEMA = ProviderSchema(
    fields={
        "box": FieldSpec("str", help="the box, e.g. debian/bookworm64 (it needs python3)"),
        "vagrant_provider": FieldSpec(
            "str", help="the Vagrant provider: virtualbox (default), libvirt, docker, ..."
        ),
        "cpus": FieldSpec("int", help="CPUs of each machine"),
        "memory": FieldSpec("int", help="memory of each machine, in MB"),
        "provider_options": FieldSpec(
            "map", help="more settings of the Vagrant provider, e.g. {nested: true}"
        ),
        "python": FieldSpec("str", help="the python command on the machines (default python3)"),
        "boot_timeout": FieldSpec(
            "number", help="seconds 'vagrant up' may take (default 1800: a box may download)"
        ),
    }
)

VAGRANT = "vagrant"
DEFAULT_PROVIDER = "virtualbox"
BOOT_TIMEOUT = 1800.0
# The machines are reached over ssh; Vagrant's own share of the folder is not needed.
_NO_SHARE = 'config.vm.synced_folder ".", "/vagrant", disabled: true'
# Settings of a provider block are Ruby method names.
_SETTING = re.compile(r"^[a-z_][a-z0-9_]*$")
# ssh-config lines kept as the Host's own fields; LogLevel is left out, so
# that ssh's own error lines reach the user.
_LEFT_OUT = ("host", "hostname", "user", "port", "identityfile", "loglevel")


class VagrantFailed(ShoalError):
    """A vagrant command failed; ``line`` says why."""

    def __init__(self, line: str) -> None:
        super().__init__(line)
        self.line = line


def _ruby(value: Any) -> str:
    """A JSON value as a Ruby literal (strings double-quoted, no interpolation)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nil"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("#", "\\#")
        return '"' + escaped.replace("\n", "\\n") + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_ruby(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_ruby(str(k))} => {_ruby(v)}" for k, v in value.items()) + "}"
    raise BadInput(f"cannot write {value!r} in a Vagrantfile")


def _provider(pool: Pool) -> str:
    return str(pool.fields.get("vagrant_provider") or DEFAULT_PROVIDER)


def _settings(pool: Pool) -> dict[str, Any]:
    """The provider block's settings: ``provider_options``, with ``cpus`` and ``memory``.

    The docker provider has no such settings: they become ``docker run``
    options in its ``create_args``.
    """
    settings = dict(pool.fields.get("provider_options") or {})
    for key in settings:
        if not _SETTING.match(key):
            raise BadInput(
                f"pool {pool.name}: provider_options: {key!r} is not a Vagrant provider setting "
                "(letters, digits and _)"
            )
    cpus, memory = pool.fields.get("cpus"), pool.fields.get("memory")
    if _provider(pool) == "docker":
        more = [*([f"--cpus={cpus}"] if cpus else []), *([f"--memory={memory}m"] if memory else [])]
        if more:
            settings["create_args"] = [*(settings.get("create_args") or []), *more]
    else:
        if cpus:
            settings.setdefault("cpus", cpus)
        if memory:
            settings.setdefault("memory", memory)
    return settings


def vagrantfile(pool: Pool, names: Sequence[str]) -> str:
    """The Vagrantfile of the pool's machines ``names``: what ``vagrant up`` is given."""
    lines = [
        f"# Written by shoal for pool {pool.name}; 'shoal down' destroys its machines.",
        "# shoal writes it again whenever it starts them: edit the pool file instead.",
        'Vagrant.configure("2") do |config|',
    ]
    if pool.fields.get("box"):
        lines.append(f"  config.vm.box = {_ruby(pool.fields['box'])}")
    lines.append(f"  {_NO_SHARE}")
    lines.append(f"  config.vm.provider {_ruby(_provider(pool))} do |p|")
    lines += [f"    p.{key} = {_ruby(value)}" for key, value in _settings(pool).items()]
    lines.append("  end")
    lines.append(f"  {_ruby(list(names))}.each do |name|")
    lines.append("    config.vm.define name")
    lines.append("  end")
    lines.append("end")
    return "\n".join(lines) + "\n"


def parse_ssh_config(text: str) -> dict[str, dict[str, list[str]]]:
    """``vagrant ssh-config``'s answer: each Host's options (keys lowercased), values in order."""
    hosts: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key.lower() == "host":
            current = hosts.setdefault(value, {})
        elif current is not None:
            current.setdefault(key.lower(), []).append(value)
    return hosts


def host_of(name: str, options: Mapping[str, list[str]], pool: Pool, slots: int) -> Host:
    """The ssh host of a machine, from its ``vagrant ssh-config`` options."""

    def first(key: str) -> str | None:
        found = options.get(key)
        return found[0] if found else None

    port = first("port")
    keys = options.get("identityfile") or []
    more = [
        f"-o{key}={value}"
        for key, values in options.items()
        if key not in _LEFT_OUT
        for value in values
    ]
    more += [f"-oIdentityFile={k}" for k in keys[1:]]
    return Host(
        name=name,
        address=first("hostname") or name,
        user=first("user"),
        port=int(port) if port and port.isdigit() else None,
        identity=keys[0] if keys else None,
        slots=slots,
        labels=dict(pool.labels),
        python=str(pool.fields.get("python") or "python3"),
        ssh_options=tuple(more),
    )


def _slots(pool: Pool) -> int:
    """What a machine runs at once: the pool's slots, else its CPUs (0: its cores)."""
    return pool.slots or int(pool.fields.get("cpus") or 0)


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    found = re.search(r"[.!?](\s|$)", text)
    return text if found is None else text[: found.start() + 1]


def _error_line(output: str) -> str | None:
    """The error ``vagrant --machine-readable`` ended with, in a line: its first sentence
    (and the first of what follows where that one ends with "shown below:")."""
    for line in output.splitlines():
        parts = line.split(",", 4)
        if len(parts) == 5 and parts[2] == "error-exit":
            text = parts[4].replace("%!(VAGRANT_COMMA)", ",")
            paragraphs = [p.replace("\\n", " ") for p in text.split("\\n\\n") if p.strip()]
            first = " ".join((paragraphs or [""])[0].split())
            said = _first_sentence(first)
            if first.endswith(":") and len(paragraphs) > 1:
                said = f"{said.rstrip('.')}: {_first_sentence(paragraphs[1])}"
            return said
    return None


def _states(output: str) -> dict[str, str]:
    """Each machine's state from ``vagrant status --machine-readable``."""
    found = {}
    for line in output.splitlines():
        parts = line.split(",", 3)
        if len(parts) == 4 and parts[2] == "state" and parts[1]:
            found[parts[1]] = parts[3]
    return found


class VagrantProvider:
    """The machines of one generated Vagrantfile per pool, each an ssh host once up."""

    name = "vagrant"
    noun = "Vagrant machine"

    def __init__(self, site: Site) -> None:
        self.site = site
        self.agents: dict[str, SshAgent] = {}
        self.pools: dict[str, Pool] = {}  # the pools started here, by name
        self.stopping: set[str] = set()  # names taken down here: not preempted
        self._lock = threading.Lock()

    # -- Vagrant itself ------------------------------------------------------

    def folder(self, pool: str, launcher: str | None = None) -> Path:
        """The pool's Vagrant folder, of this launcher's machines (or ``launcher``'s)."""
        return self.site.root / "vagrant" / (launcher or self.site.launcher) / pool

    def vagrant(
        self, folder: Path, *args: str, timeout: float = 600, log: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A vagrant command in ``folder`` (not checked); its output also to ``log`` if given.

        On timeout the command and what it started are ended (a process
        group of its own) and VagrantFailed says so.
        """
        env = dict(os.environ, VAGRANT_CHECKPOINT_DISABLE="1")
        try:
            proc = subprocess.Popen(
                [VAGRANT, *args],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise VagrantFailed(
                f"no '{VAGRANT}' command here: install Vagrant (and its provider) to use this pool"
            ) from None
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
            raise VagrantFailed(
                f"'vagrant {args[0]}' took more than {timeout:.0f} s (raise the pool's boot_timeout)"
            ) from None
        if log is not None:
            with open_private(log) as f:
                f.write(f"$ vagrant {shlex.join(args)}\n{out}{err}".encode())
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def vagrant_id(self, folder: Path, pool: Pool, machine: str) -> str:
        """The id Vagrant's provider gave the machine (a VM's UUID, a container's id), if any."""
        try:
            return (folder / ".vagrant" / "machines" / machine / _provider(pool) / "id").read_text()
        except OSError:
            return ""

    def _bring_up(self, pool: Pool, count: int, names: Sequence[str]) -> dict[str, Host]:
        """``vagrant up`` these machines; the ssh host of each that runs (VagrantFailed: none)."""
        folder = self.folder(pool.name)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        top = max([count, pool.size, pool.max or 0, *(_index(n, pool.name) for n in names)])
        defined = [f"{pool.name}-{i + 1}" for i in range(top)]
        (folder / "Vagrantfile").write_text(vagrantfile(pool, defined))
        log = self.site.logs / f"vagrant-{pool.name}.log"
        timeout = float(pool.fields.get("boot_timeout") or BOOT_TIMEOUT)
        up = self.vagrant(
            folder,
            "up",
            f"--provider={_provider(pool)}",
            "--machine-readable",
            *names,
            timeout=timeout,
            log=log,
        )
        why = _error_line(up.stdout) or (up.stderr.strip().splitlines() or [""])[-1]
        running = list(names)
        if up.returncode != 0:
            # Some may run all the same: those are started.
            status = self.vagrant(folder, "status", "--machine-readable", *names, log=log)
            running = [n for n, state in _states(status.stdout).items() if state == "running"]
        if not running:
            raise VagrantFailed(f"{why or 'vagrant up failed'} (see {log})")
        told = self.vagrant(folder, "ssh-config", *running, log=log)
        options = parse_ssh_config(told.stdout)
        slots = _slots(pool)
        hosts = {n: host_of(n, options[n], pool, slots) for n in running if n in options}
        if not hosts:
            raise VagrantFailed(f"vagrant ssh-config gave no host (see {log})")
        return hosts

    # -- the contract ---------------------------------------------------------

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
        """``vagrant up`` the machines, then start each one's agent over ssh."""
        pyz, todo = begin_up(self, pool, count, only)
        held = {m.name for m in todo if (a := self.agents.get(m.name)) is not None and a.alive()}
        hosts: dict[str, Host] = {}
        why = ""
        try:
            rest = [m.name for m in todo if m.name not in held]
            if rest:
                hosts = self._bring_up(pool, count, rest)
        except (ShoalError, OSError) as e:
            why = str(e)
        folder = self.folder(pool.name)

        def one(m: Machine) -> Machine:
            m = m.replace(provider_id=self.vagrant_id(folder, pool, m.name))
            if m.name in held:
                return m.replace(state="running")
            host = hosts.get(m.name)
            if host is None:
                return m.replace(state="failed", detail=why or "vagrant did not run it")
            m = m.replace(state="starting", address=f"{host.address}:{host.port or 22}")
            boss.note(m)
            agent = SshAgent(
                host,
                labels=m.labels,
                log=self.site.logs / f"vagrant-{m.name}.log",
                log_cap=self.site.log_cap,
            )
            self.agents[m.name] = agent
            try:
                agent.start(pyz, boss)
            except SshFailed as e:
                return m.replace(state="failed", detail=e.line)
            except (ShoalError, OSError, subprocess.SubprocessError) as e:
                return m.replace(state="failed", detail=str(e))
            return m.replace(state="running", detail="agent copied" if agent.copied else "")

        return each_host(one, todo)

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """As the agents say; one whose machine Vagrant no longer runs is preempted."""
        ended: dict[str, Machine] = {}
        for m in machines:
            agent = self.agents.get(m.name)
            if agent is None or agent.proc is None or self._cancelled(m.name):
                continue
            code = agent.proc.poll()
            if code is not None:
                ended[m.name] = m.replace(
                    state="stopped", exit_code=code, detail=agent.last_words()
                )
        for (launcher, pool_name), mine in self._by_folder(list(ended.values())).items():
            folder = self.folder(pool_name, launcher)
            try:
                said = self.vagrant(folder, "status", "--machine-readable", *[m.name for m in mine])
            except ShoalError:
                continue
            states = _states(said.stdout)
            for m in mine:
                state = states.get(m.name, "gone")
                if state != "running":
                    ended[m.name] = m.replace(
                        state="preempted", detail=f"Vagrant says the machine is {state}"
                    )
        return [ended.get(m.name, m) for m in machines]

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        """Stop the agents (after a drain, if asked), then ``vagrant destroy -f`` the machines."""
        with self._lock:
            self.stopping |= {m.name for m in machines}

        def one(m: Machine) -> None:
            agent = self.agents.pop(m.name, None)
            if agent is not None:
                if drain and agent.proc is not None:
                    agent.drain()
                    agent.proc.wait()
                agent.stop()
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    agent.ssh.close()

        each_host(one, list(machines))
        for (launcher, pool_name), mine in self._by_folder(machines).items():
            folder = self.folder(pool_name, launcher)
            if (folder / "Vagrantfile").exists():
                self._destroy(folder, [m.name for m in mine])

    def _destroy(self, folder: Path, names: Sequence[str]) -> None:
        # A `vagrant up` still running there (its keeper was killed mid-start)
        # would make a machine after the destroy: it is stopped first.
        _stop_running_in(folder)
        done = self.vagrant(
            folder, "destroy", "--force", *names, log=self.site.logs / f"vagrant-{folder.name}.log"
        )
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["vagrant destroy failed"])[-1]
            raise VagrantFailed(f"cannot destroy {', '.join(names) or 'the machines'}: {said}")

    def sweep(self, pool: Pool, *, spare: str | None = None) -> list[str]:
        """``vagrant destroy -f`` every machine Vagrant made for the pool here; their names.

        ``spare``: a launcher (``run``) whose machines are left alone: it still runs.
        """
        swept: list[str] = []
        for launcher in ("up", "run"):
            folder = self.folder(pool.name, launcher)
            if launcher == spare or not (folder / "Vagrantfile").exists():
                continue
            made = sorted(p.parent.parent.name for p in folder.glob(".vagrant/machines/*/*/id"))
            if made:
                self._destroy(folder, [])
                swept += made
        return swept

    def ssh_hosts(self, pool: Pool, machines: Sequence[Machine]) -> list[Host]:
        """The machines as ssh hosts, as ``vagrant ssh-config`` says now (``--pool NAME``)."""
        found: dict[str, Host] = {}
        for (launcher, pool_name), mine in self._by_folder(machines).items():
            told = self.vagrant(
                self.folder(pool_name, launcher), "ssh-config", *[m.name for m in mine]
            )
            options = parse_ssh_config(told.stdout)
            for m in mine:
                if m.name in options:
                    found[m.name] = host_of(m.name, options[m.name], pool, _slots(pool))
        return [found[m.name] for m in machines if m.name in found]

    def _cancelled(self, name: str) -> bool:
        with self._lock:
            return name in self.stopping

    def _by_folder(self, machines: Sequence[Machine]) -> dict[tuple[str, str], list[Machine]]:
        """The machines by the Vagrant folder that holds them: (launcher, pool)."""
        out: dict[tuple[str, str], list[Machine]] = {}
        for m in machines:
            # Recorded machines say who started them ("up:HOST:STATE"); ours are ours.
            launcher = m.owner.split(":", 1)[0] if m.owner else self.site.launcher
            out.setdefault((launcher, m.pool), []).append(m)
        return out


def _index(name: str, pool: str) -> int:
    tail = name.removeprefix(f"{pool}-")
    return int(tail) if tail != name and tail.isdigit() else 0


def _stop_running_in(folder: Path, grace: float = 10.0) -> None:
    """Stop, by PID, the processes of this user working in ``folder`` (a leftover ``vagrant up``)."""
    here = str(folder.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if os.readlink(entry / "cwd") == here and entry.stat().st_uid == os.getuid():
                found.append(int(entry.name))
        except OSError:
            continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while found and time.monotonic() < deadline:
            found = [pid for pid in found if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
            time.sleep(0.1)
        if not found:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True

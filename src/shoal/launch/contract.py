"""The launch contract: a pool's description in, machines running agents out.

Every provider implements :class:`Provider`, a handful of verbs in the manner
of Ray's autoscaler node providers:

* ``plan(pool, count)``: the machines ``up`` would start, named but not
  started, so that they are recorded before the provider is asked for them;
* ``up(pool, count, boss)``: start them (idempotent by machine name: one that
  runs already is left as it is);
* ``down(machines, drain)``: stop them (and, for rented ones, terminate);
* ``status(machines)``: what the provider sees now;
* optionally, ``ssh_hosts(pool, machines)``: those machines as ssh hosts
  (:class:`~shoal.spec.inventory.Host`), for a provider whose machines answer
  on ssh (``ssh``, the clouds, ``vagrant``). ``shoal inject``, ``ssh``, ``pull``
  and ``hosts check`` take ``--pool NAME`` through it;
* optionally, ``shells(pool, machines)``: those machines as :class:`Shell`
  objects, for a provider that reaches its machines otherwise (``docker``:
  ``docker exec``); ``shoal inject``, ``ssh`` and ``pull`` use it before
  ``ssh_hosts``. A provider with neither has machines that are not reached
  (``local``).

A :class:`Machine` is plain data. Everything above the providers (recording
machines, waiting for their agents to register, starting lost ones again)
lives in :mod:`shoal.launch.fleet` and knows no provider by name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "LIVE_STATES",
    "MACHINE_STATES",
    "READY_TIMEOUT",
    "AgentSeen",
    "AgentToken",
    "BossAccess",
    "FieldSpec",
    "Machine",
    "Pool",
    "Provider",
    "ProviderSchema",
    "Shell",
    "Site",
    "label_args",
    "numbered",
]

# requested: recorded, the provider not yet asked; starting: asked, its agent
# not yet registered; running: its agent registered; stopped: taken down or
# its agent ended; failed: it could not be started; preempted: the provider
# took it away (a spot VM reclaimed, an instance terminated behind shoal's back).
MACHINE_STATES = ("requested", "starting", "running", "stopped", "failed", "preempted")
LIVE_STATES = ("requested", "starting", "running")
# How long an agent has to register with the boss once its machine started.
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Pool:
    """Machines of one kind from one provider (an entry of a pool file)."""

    name: str
    provider: str
    count: int | None = None  # a fixed size; or min/max to follow the queue
    min: int = 0
    max: int | None = None
    slots: int | None = None  # tasks a machine runs at once (None: the provider's default)
    labels: Mapping[str, Any] = field(default_factory=dict)
    idle_stop: float | None = None  # seconds a machine may stay idle before it is stopped
    fields: Mapping[str, Any] = field(default_factory=dict)  # the provider's own (JSON data)

    @property
    def size(self) -> int:
        """How many machines the pool has when brought up."""
        return self.count if self.count is not None else self.min

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pool:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclass(frozen=True)
class AgentSeen:
    """The worker a machine's agent registered as, as the boss knows it."""

    worker_id: int
    state: str  # active, lost, stopped
    registered: float
    reason: str = ""  # why it stopped, if it said goodbye with a reason


@dataclass(frozen=True)
class Machine:
    """One machine shoal started (or will): where it is and how it is doing."""

    name: str
    pool: str
    provider: str
    provider_id: str = ""  # what the provider finds it again by: a PID, an instance id
    address: str = ""
    slots: int = 1
    labels: Mapping[str, Any] = field(default_factory=dict)
    state: str = "requested"
    since: float = 0.0  # when it entered its state
    requested: float = 0.0  # when the provider was last asked for it
    price: float | None = None  # per hour, where the provider knows it
    detail: str = ""  # why it failed or stopped; a note while it runs ("agent copied")
    owner: str = ""  # who started it: a `shoal up` keeper or a `shoal run`
    # How its agent's process ended, where the provider saw it (not recorded).
    exit_code: int | None = None
    agent: AgentSeen | None = None  # filled in from the boss's records

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def uptime(self, now: float) -> float:
        """Seconds from when its provider was last asked for it to ``now``, or to its end.

        A machine that stopped, failed or was preempted ended when it entered
        that state (``since``); one started again counts from its new request.
        """
        end = now if self.live else self.since
        return max(0.0, end - self.requested)

    def cost(self, now: float) -> float | None:
        """What it cost so far at its hourly price (None where the price is not known)."""
        return None if self.price is None else self.price * self.uptime(now) / 3600.0

    def replace(self, **changes: Any) -> Machine:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["labels"] = dict(self.labels)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Machine:
        values = {f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data}
        agent = values.get("agent")
        if isinstance(agent, Mapping):
            values["agent"] = AgentSeen(**agent)
        return cls(**values)


@dataclass(frozen=True)
class FieldSpec:
    """One provider field of a pool file: its kind, whether it must be given, what it is."""

    # "str", "int", "number", "bool", "list" (of strings), "map", or "duration"
    # (``90s``, ``30m``, ``4h`` or seconds; held as seconds)
    kind: str
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()  # the values a "str" field may take (empty: any)


@dataclass(frozen=True)
class ProviderSchema:
    """What a pool file may say for one provider, known without importing the provider.

    ``credentials(fields, environ)`` returns the one line that names the
    variable or file a missing credential is read from, or None when the
    credentials are there (they are never in the pool file).
    """

    fields: Mapping[str, FieldSpec]
    rented: bool = False  # billed while it runs: idle_stop defaults to 10 minutes
    credentials: Callable[[Mapping[str, Any], Mapping[str, str]], str | None] | None = None


class Registered(Protocol):
    """Whether the agent of the machine so named has registered (``fresh``: look again now)."""

    def __call__(self, name: str, fresh: bool = False) -> bool: ...


def _never(name: str, fresh: bool = False) -> bool:
    return False


def _unheard(machine: Machine) -> None:
    return None


class AgentToken:
    """The credential a launcher hands its agents: a ``worker`` token, never the boss's own.

    Minted through the boss on first use, once per launcher (``mint`` gets
    its name, which says who it is for in ``shoal tokens ls``), and revoked
    when the launcher ends. A worker token may only register a worker; each
    agent then syncs with the token its registration returns.
    """

    def __init__(
        self, launcher: str, mint: Callable[[str], str], revoke: Callable[[str], None]
    ) -> None:
        self.name = f"{launcher}-agents-{secrets.token_hex(3)}"
        self._mint = mint
        self._revoke = revoke
        self._token: str | None = None
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            if self._token is None:
                self._token = self._mint(self.name)
            return self._token

    def revoke(self) -> None:
        """Refuse it from now on (its agents are gone), if it was ever minted."""
        with self._lock:
            minted, self._token = self._token, None
        if minted is not None:
            self._revoke(self.name)


@dataclass(frozen=True)
class BossAccess:
    """How a machine's agent reaches the boss, and how a provider sees it arrive.

    The token is read from ``token`` when an agent starts (an
    :class:`AgentToken`: a worker token) and handed to it on its standard
    input or in its environment, never on a command line.
    """

    url: str  # the boss as this process reaches it
    token: Callable[[], str]
    # The URL agents reach the boss at directly; None: through a tunnel where
    # the provider has one (ssh), else ``url``.
    direct_url: str | None = None
    # Whether the agent of the machine so named has registered since the
    # machine was last requested: readiness, never read from a log line.
    registered: Registered = _never
    # Record a machine as it goes, before ``up`` returns: a rented machine's
    # provider id as soon as the API call that creates it answers.
    note: Callable[[Machine], None] = _unheard


@dataclass(frozen=True)
class Site:
    """Where the launching process keeps what its providers need."""

    root: Path  # the state folder
    log_cap: int | None = None  # the most of an attempt's log agents keep (None: theirs)
    launcher: str = "run"  # who launches: "run" (shoal run) or "up" (the keeper of shoal up)

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def work(self) -> Path:
        """Where agents on this machine keep workspaces and bundles."""
        return self.root / "work"

    @property
    def agents(self) -> Path:
        """Where the agent zipapp for remote machines is built."""
        return self.root / "agent"

    def boss_tag(self) -> str:
        """This state folder's boss as rented machines are tagged (``shoal-boss``): made once.

        ``shoal down`` finds every machine of this boss by it, whatever was
        recorded, even after the keeper and the boss were killed.
        """
        path = self.root / "boss-tag"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Made whole under a name of its own, then linked in: of several
        # launchers (threads) making it at once, the first one's stands.
        made = path.with_name(f"boss-tag.{secrets.token_hex(8)}")
        fd = os.open(made, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"shoal-{secrets.token_hex(6)}\n")
        try:
            os.link(made, path)
        except FileExistsError:
            pass
        finally:
            made.unlink()
        return path.read_text().strip()


def numbered(pool: Pool, provider: str, count: int, slots: int) -> list[Machine]:
    """The machines ``POOL-1`` .. ``POOL-count`` of a pool, each with ``slots`` and its labels.

    What most providers' ``plan`` is: machines named by their number in the pool.
    """
    return [
        Machine(
            name=f"{pool.name}-{i + 1}",
            pool=pool.name,
            provider=provider,
            slots=slots,
            labels=dict(pool.labels),
        )
        for i in range(count)
    ]


def label_args(labels: Mapping[str, Any]) -> list[str]:
    """The agent's ``--label KEY=VALUE`` options for these labels (values as JSON)."""
    return [f"--label={k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in labels.items()]


class Shell(Protocol):
    """Shell commands on one machine, however it is reached (ssh, ``docker exec``)."""

    @property
    def name(self) -> str:
        """The machine's name."""
        ...

    @property
    def address(self) -> str:
        """Where it is (``shoal inject`` tells every machine the others')."""
        ...

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a ``sh`` command there, ``stdin`` on its input; its output captured, not checked."""
        ...

    def command_argv(self, command: str, *, tty: bool) -> list[str]:
        """The local command that runs ``command`` there (``tty``: in a terminal, to be used)."""
        ...


class Provider(Protocol):
    """Turns a pool's description into machines that run agents.

    Four methods are optional, and so not declared here (a provider
    without them still is one):

    * ``ssh_hosts(pool, machines) -> list[Host]``: these live machines of the
      pool as ssh hosts (:class:`shoal.spec.inventory.Host`), in the order
      given; what ``--pool NAME`` connects to over ssh;
    * ``shells(pool, machines) -> list[Shell]``: the same machines as
      :class:`Shell` objects, for a provider that reaches its machines
      otherwise (``docker exec``); ``shoal inject``, ``ssh`` and ``pull``
      prefer it to ``ssh_hosts``;
    * ``sweep(pool, *, spare=None) -> list[str]``: remove every machine of
      this state folder's boss the provider finds where the pool's machines
      live (by tag or label), whatever was recorded, but those of the owner
      ``spare``; what it removed. ``shoal down`` calls it for every pool
      remembered;
    * ``spawn(pool, url)`` and ``discard_spawned()``: start the pool's agents
      before their boss exists (``url``: the socket it will serve, listening
      already), each waiting for its token, which ``up`` then hands it; and
      stop those no ``up`` took. ``shoal run`` calls them, so that agents
      load while its boss does (the local and ssh providers have them).
    """

    name: str
    # What one machine is called in a sentence: "local worker", "ssh host".
    noun: str

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        """The machines ``up(pool, count, …)`` starts, named, in state ``requested``."""
        ...

    def up(
        self,
        pool: Pool,
        count: int,
        boss: BossAccess,
        *,
        only: Collection[str] | None = None,
    ) -> list[Machine]:
        """Start the pool's machines (``only`` those named), each ``starting``,
        ``running`` or ``failed`` (with why in ``detail``); idempotent by name."""
        ...

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        """Stop them: ``drain`` lets their agents finish what runs first, however long."""
        ...

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """The machines as the provider sees them now (``running`` or ``stopped``)."""
        ...

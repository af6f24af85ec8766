"""The ``slurm`` provider proper: sbatch, squeue and scancel (see :mod:`shoal.launch.slurm`)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shoal.exceptions import ShoalError
from shoal.launch.contract import BossAccess, Machine, Pool, Site, numbered
from shoal.launch.slurm.script import check, exits_folder, job_script, parse_tags
from shoal.spec.inventory import Host
from shoal.statedir import write_private

if TYPE_CHECKING:
    from shoal.agent.client import TlsFiles

__all__ = ["ENDED_BY_SLURM", "LIVE", "SlurmProvider", "Squeued", "machine_state"]

# How long a stopped worker has to report what it ran before its job is cancelled.
STOP_TIMEOUT = 10.0
# How long one Slurm command may take (a busy controller answers slowly).
COMMAND_TIMEOUT = 60.0
# Between looks at a job being drained.
POLL = 0.5
# How long squeue's answer serves to say how the jobs are: a launcher asks
# several times a second, and a cluster's controller is shared by everyone.
SQUEUE_EVERY = 3.0
# Slurm's job states in which the job may still run its agent.
LIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "SUSPENDED",
        "COMPLETING",
        "RESIZING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESV_DEL_HOLD",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
    }
)
# Slurm's job states that say Slurm, not the agent, ended the job.
ENDED_BY_SLURM = frozenset(
    {
        "CANCELLED",
        "TIMEOUT",
        "PREEMPTED",
        "NODE_FAIL",
        "BOOT_FAIL",
        "DEADLINE",
        "OUT_OF_MEMORY",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
# Which of squeue's fields are read, in order (%k: the comment, the job's tags).
SQUEUE_FORMAT = "%i|%T|%r|%N|%k"


@dataclass(frozen=True)
class Squeued:
    """One job as ``squeue`` shows it."""

    id: str
    state: str  # Slurm's: PENDING, RUNNING, COMPLETED, CANCELLED, ...
    reason: str
    node: str
    tags: Mapping[str, str]


def machine_state(
    m: Machine, job: Squeued | None, *, exit_code: int | None, taken_down: bool, log: str
) -> Machine:
    """A machine as its job says: still live, stopped (its agent ended, or shoal
    took it down), or preempted (Slurm ended it; ``job`` None: gone from squeue).

    ``exit_code``: what the job wrote when its agent ended, if it did.
    ``log``: the agent's last words, for an agent that ended on its own.
    """
    if (
        job is not None
        and job.state in LIVE
        and not (job.state == "COMPLETING" and exit_code is not None)
    ):
        if job.state == "PENDING":
            why = f" ({job.reason})" if job.reason and job.reason != "None" else ""
            return m.replace(detail=f"job {job.id} waits in Slurm's queue{why}")
        node = job.node if job.node and job.node != "(null)" else m.address
        return m.replace(address=node, detail=f"job {job.id} on {node}" if node else m.detail)
    if taken_down:
        return m.replace(state="stopped", detail="taken down", exit_code=exit_code)
    if exit_code is not None and (job is None or job.state not in ENDED_BY_SLURM):
        # Its worker ended by itself (drained at the walltime, say), and so did the job.
        return m.replace(state="stopped", exit_code=exit_code, detail=log)
    if job is None:
        said = f"job {m.provider_id} left Slurm's queue before its worker ended"
    else:
        reason = f" ({job.reason})" if job.reason and job.reason != "None" else ""
        said = f"Slurm ended job {job.id}: {job.state}{reason}"
    return m.replace(state="preempted", detail=said)


def _is_job_of(job: Squeued, m: Machine) -> bool:
    """Whether the job was submitted for this machine (by its launcher, where it is known)."""
    launcher = m.owner.partition(":")[0]
    return job.tags.get("shoal-machine") == m.name and (
        not launcher or job.tags.get("shoal-owner") == launcher
    )


class SlurmProvider:
    """Batch jobs of the Slurm cluster this machine submits to, one agent in each."""

    name = "slurm"
    noun = "Slurm job"

    def __init__(self, site: Site) -> None:
        # Every path a job is given is absolute: the job starts in a folder of its own.
        self.site = dataclasses.replace(site, root=site.root.resolve())
        self.stopping: set[str] = set()  # names taken down here: not preempted
        self._lock = threading.Lock()
        self._queue: tuple[float, dict[str, Squeued]] | None = None  # squeue's last answer

    @property
    def folder(self) -> Path:
        """Where the job scripts, the tokens waiting for their jobs and the exit codes are."""
        return self.site.root / "slurm"

    def _token_file(self, machine: str) -> Path:
        return self.folder / f"{machine}.token"

    def _serial_file(self, machine: str) -> Path:
        """The name and serial of the client certificate the machine's job was given."""
        return self.folder / f"{machine}.serial"

    # -- certificates ---------------------------------------------------------

    def _certs(self, m: Machine, url: str) -> TlsFiles | None:
        """The files the job's agent uses against a boss over https: the state
        folder's CA certificate, and a client certificate of the machine's own
        (issued here, where the CA's key stays; its serial kept to revoke it).

        None over plain HTTP, or with no CA here (the system's authorities).
        """
        from shoal.agent.client import TlsFiles
        from shoal.launch.ssh.provider import machine_certs
        from shoal.security import CertAuthority

        folder = self.site.root / "certs"
        ca = CertAuthority(folder)
        if not url.startswith("https://") or not ca.exists():
            return None
        # The CA's own files, on the shared filesystem (0600, in its 0700 folder).
        ca_crt, crt, key = (str(folder / name) for name, _ in machine_certs(folder, m.name))
        name = Path(crt).stem
        issued = ca.current(name)
        if issued is not None:
            write_private(self._serial_file(m.name), f"{name} {issued.serial}\n")
        return TlsFiles(ca_crt, crt, key)

    def _revoke(self, names: Collection[str]) -> None:
        """Revoke the certificates these machines' jobs were given: their jobs have
        ended. One issued since (a new job's) is left alone."""
        from shoal.security import CertAuthority

        ca = CertAuthority(self.site.root / "certs")
        for name in names:
            record = self._serial_file(name)
            try:
                cert, _, serial = record.read_text().strip().partition(" ")
            except OSError:
                continue
            try:
                issued = ca.current(cert) if ca.exists() else None
                if issued is not None and str(issued.serial) == serial:
                    ca.revoke(cert)
            except ShoalError:
                continue  # a damaged index: 'shoal certs ls' says so; tried again later
            record.unlink(missing_ok=True)

    # -- the contract ---------------------------------------------------------

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        cpus = pool.fields.get("cpus")
        return numbered(pool, self.name, count, pool.slots or (int(cpus) if cpus else 1))

    def up(
        self,
        pool: Pool,
        count: int,
        boss: BossAccess,
        *,
        only: Collection[str] | None = None,
    ) -> list[Machine]:
        """Submit a job for each machine; each ``starting`` (its job queued) or ``failed``.

        Not waited for: a job may wait in Slurm's queue for long; its agent
        registers when it runs. A machine whose job is still queued or
        running is left as it is. BadInput (one line) for a pool sbatch
        could not take, before anything is submitted.
        """
        from shoal.launch.zipapp import agent_zipapp

        check(pool)
        todo = [m for m in self.plan(pool, count) if only is None or m.name in only]
        if not todo:
            return []
        # Where the nodes read it: the state folder, on the shared filesystem.
        pyz = agent_zipapp(self.site.agents)
        for folder in (self.folder, exits_folder(self.site), self.site.logs):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._lock:
            self.stopping -= {m.name for m in todo}
        try:
            live = {
                j.tags.get("shoal-machine"): j
                for j in self._mine()
                if j.state in LIVE and j.tags.get("shoal-owner") == self.site.launcher
            }
        except ShoalError as e:
            return [m.replace(state="failed", detail=str(e)) for m in todo]
        url = str(pool.fields.get("boss_url") or boss.direct_url or boss.url)
        out = []
        for m in todo:
            job = live.get(m.name)
            if job is not None:
                out.append(m.replace(state="starting", provider_id=job.id))
                continue
            out.append(self._submit(pool, m, boss, url, pyz))
        return out

    def _submit(self, pool: Pool, m: Machine, boss: BossAccess, url: str, pyz: Path) -> Machine:
        token = self._token_file(m.name)
        try:
            tls = self._certs(m, url)
        except ShoalError as e:
            return m.replace(state="failed", detail=str(e))
        script = job_script(
            pool, m, site=self.site, boss_url=url, pyz=pyz, token_file=token, tls=tls
        )
        path = self.folder / f"{m.name}.sh"
        write_private(path, script)
        write_private(token, boss.token() + "\n")
        log = self.site.logs / f"slurm-{m.name}-%j.log"
        try:
            done = _slurm(
                "sbatch", "--parsable", f"--output={log}", f"--chdir={self.site.root}", str(path)
            )
        except ShoalError as e:
            token.unlink(missing_ok=True)
            self._revoke([m.name])
            return m.replace(state="failed", detail=str(e))
        self._forget_queue()
        job_id = done.stdout.strip().split(";")[0]
        m = m.replace(state="starting", provider_id=job_id, detail=f"job {job_id} submitted")
        boss.note(m)
        return m

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """As ``squeue`` says (unchanged while Slurm cannot be asked)."""
        try:
            jobs = self._jobs()
        except ShoalError:
            return list(machines)
        out = []
        for m in machines:
            if not m.provider_id:
                out.append(m)
                continue
            job = jobs.get(m.provider_id)
            code = self._exit_code(m.provider_id)
            with self._lock:
                taken_down = m.name in self.stopping
            seen = machine_state(
                m, job, exit_code=code, taken_down=taken_down, log=self._last_words(m, code)
            )
            if not seen.live:
                self._token_file(m.name).unlink(missing_ok=True)
                self._revoke([m.name])
            out.append(seen)
        return out

    def _exit_code(self, job_id: str) -> int | None:
        try:
            text = (exits_folder(self.site) / f"{job_id}.exit").read_text().strip()
        except OSError:
            return None
        return int(text) if text.lstrip("-").isdigit() else None

    def _last_words(self, m: Machine, code: int | None) -> str:
        if code is None:
            return ""
        from shoal.launch import procs

        return procs.last_words(self.site.logs / f"slurm-{m.name}-{m.provider_id}.log", 0, code)

    def down(self, machines: Sequence[Machine], drain: bool) -> None:
        """Stop their jobs: drain (the agent finishes what runs, however long) or
        interrupt (what runs is reported and runs again elsewhere), then cancel.

        ShoalError (Slurm's own line) if they could not be cancelled.
        """
        with self._lock:
            self.stopping |= {m.name for m in machines}
        ids = {m.provider_id for m in machines if m.provider_id}
        try:
            mine = self._mine()
        except ShoalError:
            # squeue cannot say which run: cancel what is known, at once.
            if ids:
                _scancel(sorted(ids))
            raise
        # A machine whose id was never recorded (its launcher died mid-sbatch): by its tags.
        for m in machines:
            if not m.provider_id:
                ids |= {j.id for j in mine if j.state in LIVE and _is_job_of(j, m)}
        live = {j.id: j for j in mine if j.id in ids and j.state in LIVE}
        running = [i for i, j in live.items() if j.state == "RUNNING"]
        queued = [i for i in live if i not in running]
        if queued:
            _scancel(queued)
        if running:
            # Only to running jobs: scancel waits for a queued one to start to signal it.
            _signal(running, signal.SIGTERM if drain else signal.SIGUSR1)
            self._wait_gone(running, None if drain else STOP_TIMEOUT)
            _scancel(running)
        for m in machines:
            self._token_file(m.name).unlink(missing_ok=True)
        self._revoke([m.name for m in machines])
        self._forget_queue()

    def _wait_gone(self, ids: Sequence[str], timeout: float | None) -> None:
        """Until the jobs have ended (or the timeout, if one is given)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            try:
                left = [j for j in self._mine() if j.id in ids and j.state in LIVE]
            except ShoalError:
                return
            if not left or all(j.state == "COMPLETING" for j in left):
                return
            time.sleep(POLL)

    def sweep(self, pool: Pool, *, spare: str | None = None) -> list[str]:
        """Cancel every job of this boss still queued or running; their ids.

        ``spare``: an owner (``run``) whose jobs are left alone: it still runs.
        """
        found = [
            j
            for j in self._mine()
            if j.state in LIVE and (spare is None or j.tags.get("shoal-owner") != spare)
        ]
        if found:
            _scancel([j.id for j in found])
        names = [j.tags.get("shoal-machine", "") for j in found]
        for name in names:
            self._token_file(name).unlink(missing_ok=True)
        self._revoke(names)
        self._forget_queue()
        return [j.id for j in found]

    def ssh_hosts(self, pool: Pool, machines: Sequence[Machine]) -> list[Host]:
        """The nodes the machines' jobs run on, as ssh hosts (``shoal ssh/pull/inject --pool``)."""
        options = tuple(str(o) for o in pool.fields.get("ssh_options") or [])
        return [
            Host(
                name=m.name,
                address=m.address,
                user=str(pool.fields["ssh_user"]) if pool.fields.get("ssh_user") else None,
                slots=m.slots,
                labels=dict(m.labels),
                python=str(pool.fields.get("python") or "python3"),
                ssh_options=options,
            )
            for m in machines
            if m.address
        ]

    # -- Slurm's commands -----------------------------------------------------

    def _jobs(self) -> dict[str, Squeued]:
        """The jobs by id, those just ended too, as squeue said at most ``SQUEUE_EVERY`` ago."""
        with self._lock:
            if self._queue is not None and time.monotonic() - self._queue[0] < SQUEUE_EVERY:
                return self._queue[1]
        jobs = {j.id: j for j in self._mine(every=True)}
        with self._lock:
            self._queue = (time.monotonic(), jobs)
        return jobs

    def _forget_queue(self) -> None:
        """Ask squeue afresh next time (jobs were submitted or cancelled)."""
        with self._lock:
            self._queue = None

    def _mine(self, every: bool = False) -> list[Squeued]:
        """The jobs this state folder's boss had submitted, as this user's queue has them
        (``every``: those just ended too)."""
        tag = self.site.boss_tag()
        args = ["squeue", "--me", "-h", "-o", SQUEUE_FORMAT]
        if every:
            args += ["-t", "all"]
        out = []
        for line in _slurm(*args).stdout.splitlines():
            parts = line.split("|", 4)
            if len(parts) != 5:
                continue
            tags = parse_tags(parts[4])
            if tags.get("shoal-boss") == tag and "shoal-machine" in tags:
                out.append(Squeued(parts[0], parts[1], parts[2], parts[3], tags))
        return out


def _environment() -> dict[str, str]:
    """This process's environment without a boss credential: Slurm hands it to the job."""
    from shoal.agent.client import CREDENTIAL_VARS

    return {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}


def _slurm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; ShoalError with its last line if it fails."""
    try:
        done = subprocess.run(
            list(args),
            env=_environment(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
    except FileNotFoundError:
        raise ShoalError(
            f"no {args[0]} here: a slurm pool is brought up where Slurm's commands are "
            "(a cluster's login node; Debian: apt-get install slurm-client)"
        ) from None
    except subprocess.TimeoutExpired:
        raise ShoalError(f"{args[0]} did not answer within {COMMAND_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise ShoalError(lines[-1] if lines else f"{args[0]} failed (exit code {done.returncode})")
    return done


def _scancel(ids: Sequence[str]) -> None:
    """Cancel the jobs (those that ended already are no error to scancel)."""
    _slurm("scancel", *ids)


def _signal(ids: Sequence[str], sig: signal.Signals) -> None:
    """Send the jobs' batch shell ``sig``, which it passes to the agent (best effort: a job
    that ended meanwhile is an error to scancel, and is cancelled after all the same)."""
    with contextlib.suppress(ShoalError):
        _slurm("scancel", "--batch", f"--signal={sig.name.removeprefix('SIG')}", *ids)

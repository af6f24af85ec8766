"""The ``slurm`` provider: a machine is one batch job, whose script runs a worker agent.

In the manner of dask-jobqueue: a generated job script (:func:`job_script`,
printable, kept as ``STATE/slurm/MACHINE.sh``), ``sbatch`` to submit it,
``squeue`` to watch it, ``scancel`` to stop it. Nothing is installed on the
cluster: **the state folder must be on a filesystem the compute nodes share
with the machine shoal runs on** (the home or project folder of most
clusters), as the job runs the agent zipapp from there, reads the token
from there, and writes its log and exit code there. Its workspaces are
there too unless the pool says ``workdir`` (a node-local folder, say).

The boss's token is never on a command line, in the job script, in the
job's environment or in Slurm's records: shoal writes it to
``STATE/slurm/MACHINE.token`` (mode 0600, in the private state folder)
before ``sbatch``; the job, once started, opens the file, removes it, and
hands it to the agent on its standard input (``--token-file=/dev/stdin``).
A job cancelled before it started leaves its file to shoal, which removes
it. ``sbatch`` gets this process's environment without any boss
credential (Slurm passes the submitter's environment on to the job).

A job is tagged in its comment (``shoal-boss=…,shoal-pool=…,
shoal-machine=…,shoal-owner=…``), so that :meth:`SlurmProvider.sweep`
(``shoal down``) finds this boss's jobs whatever was recorded. Its id is
recorded as soon as ``sbatch`` answers; it is ``starting`` while Slurm
queues it and until its agent registers (the launcher's boot deadline
applies: ``boot_timeout``), ``running`` from then. A job that Slurm ends
behind shoal's back (cancelled, preempted, failed, a node lost) is
``preempted``, with Slurm's word in ``detail``: its worker is declared lost
at once and its tasks run again elsewhere. Jobs are submitted
``--no-requeue``: a job that Slurm would requeue ends instead, and the
pool starts another when work waits.

Walltime: the agent is told when its job ends (``--end-at``: the least of
Slurm's end time for the job and its start plus the pool's ``walltime``;
Slurm counts in whole minutes, the pool may say seconds). It takes no task
whose ``timeout`` would outlast the job, drains before the end, and
interrupts a task without a timeout before Slurm would kill it, so that it
runs again elsewhere (give tasks a ``timeout`` on Slurm).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from shoal.exceptions import BadInput, ShoalError
from shoal.launch.contract import (
    BossAccess,
    FieldSpec,
    Machine,
    Pool,
    ProviderSchema,
    Site,
    label_args,
)
from shoal.spec.inventory import Host
from shoal.statedir import write_private

__all__ = ["SCHEMA", "SlurmProvider", "Squeued", "job_script", "machine_state"]

SCHEMA = ProviderSchema(
    fields={
        "partition": FieldSpec("str", help="the partition the jobs go to (default: the cluster's)"),
        "account": FieldSpec("str", help="the account the jobs are charged to"),
        "walltime": FieldSpec(
            "duration", help="how long a job may run, e.g. 4h (default: the partition's limit)"
        ),
        "cpus": FieldSpec("int", help="CPUs per job; a worker's slots default to its job's CPUs"),
        "memory": FieldSpec("str", help="memory per job, as sbatch's --mem takes it, e.g. 8G"),
        "sbatch": FieldSpec("list", help="more sbatch options, e.g. ['--qos=long']"),
        "python": FieldSpec("str", help="the python command on the nodes (default python3)"),
        "boss_url": FieldSpec(
            "str", help="the URL compute nodes reach the boss at (default: the boss's own)"
        ),
        "workdir": FieldSpec(
            "str", help="where workers keep workspaces (default: the state folder's work/)"
        ),
        "boot_timeout": FieldSpec(
            "duration",
            help="how long a job may wait in the queue and start its worker (default 10m)",
        ),
        "ssh_user": FieldSpec("str", help="the account shoal ssh reaches nodes as"),
        "ssh_options": FieldSpec("list", help="more ssh options for reaching nodes"),
    },
    rented=True,
)

# How long a stopped worker has to report what it ran before its job is cancelled.
STOP_TIMEOUT = 10.0
# How long one Slurm command may take (a busy controller answers slowly).
COMMAND_TIMEOUT = 60.0
# Between looks at a job being drained.
POLL = 0.5
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


def _tags(site: Site, pool: str, machine: str) -> str:
    """The job's comment: what finds it again (``shoal-boss`` this state folder's boss)."""
    return (
        f"shoal-boss={site.boss_tag()},shoal-pool={pool},shoal-machine={machine},"
        f"shoal-owner={site.launcher}"
    )


def _parse_tags(comment: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in comment.split(","))
    return {k: v for k, sep, v in pairs if sep and k.startswith("shoal-")}


@dataclass(frozen=True)
class Squeued:
    """One job as ``squeue`` shows it."""

    id: str
    state: str  # Slurm's: PENDING, RUNNING, COMPLETED, CANCELLED, ...
    reason: str
    node: str
    tags: Mapping[str, str]


def _walltime(pool: Pool) -> float | None:
    value = pool.fields.get("walltime")
    return float(value) if value is not None else None


def _extra_lines(pool: Pool) -> list[str]:
    """The pool's own sbatch options as ``#SBATCH`` lines (BadInput for one that is not)."""
    lines = []
    for entry in pool.fields.get("sbatch") or []:
        option = str(entry).strip().removeprefix("#SBATCH").strip()
        if not option.startswith("-") or "\n" in option or "\r" in option:
            raise BadInput(
                f"pool {pool.name}: 'sbatch' entry {entry!r} is not an sbatch option: "
                "write each as on sbatch's command line, e.g. --qos=long"
            )
        lines.append(f"#SBATCH {option}")
    return lines


def job_script(
    pool: Pool,
    machine: Machine,
    *,
    site: Site,
    boss_url: str,
    pyz: Path,
    token_file: Path,
) -> str:
    """The batch script of one machine's job: its options, then what starts its agent.

    It holds no secret: the token is read from ``token_file``, which the job
    removes as soon as it has opened it.
    """
    fields = pool.fields
    directives = [
        f"--job-name=shoal-{machine.name}",
        f"--comment={_tags(site, pool.name, machine.name)}",
        "--nodes=1",
        "--ntasks=1",
        "--no-requeue",
    ]
    if fields.get("cpus"):
        directives.append(f"--cpus-per-task={int(fields['cpus'])}")
    if fields.get("memory"):
        directives.append(f"--mem={fields['memory']}")
    walltime = _walltime(pool)
    if walltime is not None:
        # Slurm counts whole minutes; the agent is told the pool's own end.
        directives.append(f"--time={max(1, math.ceil(walltime / 60))}")
    for key in ("partition", "account"):
        if fields.get(key):
            directives.append(f"--{key}={fields[key]}")
    lines = ["#!/bin/bash", *(f"#SBATCH {d}" for d in directives), *_extra_lines(pool)]
    q = shlex.quote
    python = str(fields.get("python") or "python3")
    workdir = str(fields.get("workdir") or site.work)
    slots = str(pool.slots) if pool.slots else '"${SLURM_CPUS_ON_NODE:-1}"'
    agent = [
        '"$python"',
        q(str(pyz)),
        q(f"--boss={boss_url}"),
        q(f"--name={machine.name}"),
        f"--slots={slots}",
        q(f"--workdir={workdir}"),
        "--token-file=/dev/stdin",
        *(q(a) for a in label_args(pool.labels)),
    ]
    if site.log_cap is not None:
        agent.append(f"--log-cap={site.log_cap}")
    lines += [
        "#",
        f"# shoal's worker for machine {machine.name} of pool {pool.name}, written by shoal.",
        "# The boss's token is not in this script: the file below holds it until the job",
        "# starts; the job opens it, removes it, and gives it to the worker on its stdin.",
        "set -u",
        f"token={q(str(token_file))}",
        f"python={q(python)}",
        f"exit_file={q(str(_exits(site)))}/$SLURM_JOB_ID.exit",
        "# How the worker ended, for shoal: on purpose, or not.",
        'ended() { echo "$1" > "$exit_file"; exit "$1"; }',
        'if ! exec 3<"$token"; then',
        '  echo "shoal worker: no token at $token (the job ran twice, or shoal took it down)" >&2',
        "  ended 2",
        "fi",
        'rm -f "$token"',
        'if ! command -v "$python" >/dev/null; then',
        "  echo \"shoal worker: no $python on $(hostname): set the pool's 'python'\" >&2",
        "  ended 2",
        "fi",
        "# When the job ends: Slurm's end time, and this start plus the pool's walltime.",
        "end=",
        *([f"end=$(( $(date +%s) + {math.floor(walltime)} ))"] if walltime is not None else []),
        'slurm_end=$(squeue -h -j "$SLURM_JOB_ID" -o %e 2>/dev/null || true)',
        'if at=$(date -d "$slurm_end" +%s 2>/dev/null) && { [ -z "$end" ] || [ "$at" -lt "$end" ]; }; then',
        "  end=$at",
        "fi",
        " ".join(agent) + ' ${end:+"--end-at=$end"} <&3 3<&- &',
        "agent=$!",
        "exec 3<&-",
        "# scancel --batch signals this shell alone: TERM drains the worker, USR1 interrupts it.",
        "trap 'kill -TERM \"$agent\" 2>/dev/null' TERM",
        "trap 'kill -USR1 \"$agent\" 2>/dev/null' USR1",
        "# A trapped signal ends a wait early: wait again while the worker runs.",
        "while :; do",
        '  wait "$agent"; code=$?',
        '  kill -0 "$agent" 2>/dev/null || break',
        "done",
        'wait "$agent" 2>/dev/null; last=$?',
        '[ "$last" -eq 127 ] || code=$last',
        'ended "$code"',
    ]
    return "\n".join(lines) + "\n"


def _exits(site: Site) -> Path:
    """Where jobs write their agent's exit code (``JOBID.exit``)."""
    return site.root / "slurm" / "exits"


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

    @property
    def folder(self) -> Path:
        """Where the job scripts, the tokens waiting for their jobs and the exit codes are."""
        return self.site.root / "slurm"

    def _token_file(self, machine: str) -> Path:
        return self.folder / f"{machine}.token"

    # -- the contract ---------------------------------------------------------

    def plan(self, pool: Pool, count: int) -> list[Machine]:
        cpus = pool.fields.get("cpus")
        return [
            Machine(
                name=f"{pool.name}-{i + 1}",
                pool=pool.name,
                provider=self.name,
                slots=pool.slots or (int(cpus) if cpus else 1),
                labels=dict(pool.labels),
            )
            for i in range(count)
        ]

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
        running is left as it is.
        """
        from shoal.launch.zipapp import agent_zipapp

        todo = [m for m in self.plan(pool, count) if only is None or m.name in only]
        if not todo:
            return []
        # Where the nodes read it: the state folder, on the shared filesystem.
        pyz = agent_zipapp(self.site.agents)
        for folder in (self.folder, _exits(self.site), self.site.logs):
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
            script = job_script(pool, m, site=self.site, boss_url=url, pyz=pyz, token_file=token)
        except BadInput as e:
            return m.replace(state="failed", detail=str(e))
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
            return m.replace(state="failed", detail=str(e))
        job_id = done.stdout.strip().split(";")[0]
        m = m.replace(state="starting", provider_id=job_id, detail=f"job {job_id} submitted")
        boss.note(m)
        return m

    def status(self, machines: Sequence[Machine]) -> list[Machine]:
        """As ``squeue`` says (unchanged while Slurm cannot be asked)."""
        try:
            jobs = {j.id: j for j in self._mine(every=True)}
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
            out.append(seen)
        return out

    def _exit_code(self, job_id: str) -> int | None:
        try:
            text = (_exits(self.site) / f"{job_id}.exit").read_text().strip()
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
        interrupt (what runs is reported and runs again elsewhere), then cancel."""
        with self._lock:
            self.stopping |= {m.name for m in machines}
        try:
            mine = self._mine()
        except ShoalError:
            mine = []
        ids = {m.provider_id for m in machines if m.provider_id}
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
            _scancel(running, signal.SIGTERM if drain else signal.SIGUSR1)
            self._wait_gone(running, None if drain else STOP_TIMEOUT)
            _scancel(running)
        for m in machines:
            self._token_file(m.name).unlink(missing_ok=True)

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
        for j in found:
            self._token_file(j.tags.get("shoal-machine", "")).unlink(missing_ok=True)
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
            tags = _parse_tags(parts[4])
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


def _scancel(ids: Sequence[str], sig: signal.Signals | None = None) -> None:
    """Cancel the jobs, or send their batch shell ``sig`` (which it passes to the agent)."""
    args = ["scancel"]
    if sig is not None:
        args += ["--batch", f"--signal={sig.name.removeprefix('SIG')}"]
    with contextlib.suppress(ShoalError):
        _slurm(*args, *ids)

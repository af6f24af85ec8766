"""A Slurm cluster of one node on loopback, for end-to-end tests of the ``slurm`` provider.

``slurm_lab(root)`` (a context manager, like ``ssh_lab`` and ``cloud_lab``)
makes a folder of its own in the system's temp folder (mode 0755: munged
refuses a key or socket under a folder others may write; short, because
munged's and slurmd's UNIX socket paths must fit in 108 bytes), and starts,
with no systemd and nothing of the machine's own configuration:

* ``munged -F`` with a key made for the lab, its socket, PID, seed and log
  files in the folder;
* ``slurmctld -D -i`` and ``slurmd -D -N localhost``, both reading the lab's
  ``slurm.conf``: one node ``localhost`` at 127.0.0.1 with 2 CPUs, a partition
  ``debug``, CPUs handed out one by one (``select/cons_tres``), no accounting, no cgroups (``proctrack/linuxproc``,
  ``task/none``), every state, spool, PID and log path in the folder, the
  controller's and slurmd's ports picked free by the OS, ``AuthInfo``
  naming the lab's munge socket. Finished jobs leave ``squeue`` after 2 s
  (``MinJobAge``); a cancelled job's processes are killed 5 s after its
  SIGTERM (``KillWait``).

Commands see the cluster through ``lab.env()`` (``SLURM_CONF``); a shoal
process given it passes it on to the keeper it starts, and ``sbatch``
passes it on to the jobs. The lab is ready when ``sinfo`` says the node is
idle. At the end, also when the test failed, every job of the lab is
cancelled and waited for, any process of a job still there is killed by
its PID (``scontrol listpids``), then slurmd, slurmctld and munged are
stopped by their PIDs; the daemons' logs are copied under ``root``.

Needs root (slurmd starts each job as its user) and Debian's ``slurmctld``,
``slurmd``, ``slurm-client`` and ``munge``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.needs import needs

__all__ = ["Job", "SlurmLab", "needs_slurm", "slurm_lab"]

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol")

needs_slurm = needs(
    "root and Debian's slurmctld, slurmd, slurm-client and munge",
    os.geteuid() == 0
    and all(Path(d).exists() for d in DAEMONS)
    and all(shutil.which(c) is not None for c in CLIENTS),
)

# How long the cluster has to come up, and its jobs to go at the end.
READY_TIMEOUT = 60.0
GONE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Job:
    """A job as ``squeue`` shows it."""

    id: str
    state: str  # PENDING, RUNNING, COMPLETED, CANCELLED, ...
    reason: str
    name: str
    comment: str


@dataclass
class SlurmLab:
    """A running one-node cluster: its folder, its configuration, its daemons."""

    folder: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.folder / "slurm.conf"

    def env(self) -> dict[str, str]:
        """What a process's environment needs for its Slurm commands to reach this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster, in the lab's folder (where a job the
        test submits writes its output by default)."""
        return subprocess.run(
            list(args),
            cwd=self.folder,
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def jobs(self, *, every: bool = False) -> list[Job]:
        """The cluster's jobs: those live (pending, running, completing), or ``every`` one
        it still knows (finished ones leave after ``MinJobAge``)."""
        args = ["squeue", "-h", "-o", "%i|%T|%r|%j|%k"]
        if every:
            args += ["-t", "all"]
        out = self.run(*args).stdout
        found = []
        for line in out.splitlines():
            parts = line.split("|", 4)
            if len(parts) == 5:
                found.append(Job(*parts))
        return found

    def wait_no_jobs(self, timeout: float = GONE_TIMEOUT) -> list[Job]:
        """Wait until no job is pending, running or completing; those left at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.jobs()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def log(self) -> str:
        """What the daemons logged, for a failing test's message."""
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            with contextlib.suppress(OSError):
                parts.append(f"--- {name}\n" + (self.folder / "log" / name).read_text()[-4000:])
        return "\n".join(parts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(folder: Path) -> str:
    d = folder
    return f"""\
ClusterName=shoallab
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=2
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _start(lab: SlurmLab, name: str, args: list[str]) -> None:
    out = open(lab.folder / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the daemon's
    try:
        lab.procs[name] = subprocess.Popen(
            args,
            env={**os.environ, **lab.env()},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            # Stopped by the lab alone, after the jobs: not by a Ctrl-C at the terminal.
            start_new_session=True,
        )
    finally:
        out.close()


def _wait_for(what: str, lab: SlurmLab, ready: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for name, proc in lab.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}) before {what}\n{lab.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} within {timeout:.0f} s\n{lab.log()}")
        time.sleep(0.1)


def _idle(lab: SlurmLab) -> bool:
    done = lab.run("sinfo", "-h", "-o", "%t", check=False)
    return done.returncode == 0 and done.stdout.strip() == "idle"


@contextlib.contextmanager
def slurm_lab(root: Path) -> Iterator[SlurmLab]:
    """A one-node Slurm cluster on loopback for the test; its daemons' logs end under ``root``."""
    folder = Path(tempfile.mkdtemp(prefix="shoal-slurm-"))
    folder.chmod(0o755)
    lab = SlurmLab(folder)
    try:
        for sub in ("munge", "state", "spool", "log"):
            (folder / sub).mkdir(mode=0o755)
        key = folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        lab.conf.write_text(_conf(folder))
        m = folder / "munge"
        _start(
            lab,
            "munged",
            [
                DAEMONS[0],
                "--foreground",
                f"--socket={m}/munge.sock",
                f"--key-file={key}",
                f"--pid-file={m}/munged.pid",
                f"--log-file={m}/munged.log",
                f"--seed-file={m}/munged.seed",
            ],
        )
        _wait_for("munge's socket", lab, (m / "munge.sock").exists, READY_TIMEOUT)
        _start(lab, "slurmctld", [DAEMONS[1], "-D", "-i", "-f", str(lab.conf)])
        _start(lab, "slurmd", [DAEMONS[2], "-D", "-N", "localhost", "-f", str(lab.conf)])
        _wait_for("idle node", lab, lambda: _idle(lab), READY_TIMEOUT)
        yield lab
    finally:
        _stop(lab)
        with contextlib.suppress(OSError):
            shutil.copytree(folder / "log", root / "slurm-logs", dirs_exist_ok=True)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(lab: SlurmLab) -> None:
    """Every job of the lab cancelled, any of its processes left killed, then each daemon."""
    if "slurmctld" in lab.procs and lab.procs["slurmctld"].poll() is None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            ids = [j.id for j in lab.jobs()]
            if ids:
                lab.run("scancel", *ids, check=False)
                lab.wait_no_jobs()
    if "slurmd" in lab.procs and lab.procs["slurmd"].poll() is None:
        # What a job left running (slurmd's step daemons know their processes).
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            listed = lab.run("scontrol", "listpids", check=False).stdout
            for line in listed.splitlines()[1:]:
                pid = line.split()[0] if line.split() else ""
                if pid.isdigit() and int(pid) != os.getpid():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
    for name in ("slurmd", "slurmctld", "munged"):
        proc = lab.procs.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

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

With a boss over https (``--tls``, ``--mtls``) and a CA in the state
folder, each machine gets a client certificate of its own, named after it
and issued by shoal before ``sbatch`` (the CA's key never leaves shoal's
side): the job script gives the agent ``--ca``, ``--cert`` and ``--key``,
paths of ``STATE/certs`` (keys 0600 in that 0700 folder), never a key. Once
the job has ended (seen ended, taken down, or swept by ``shoal down``)
shoal revokes that certificate (``STATE/slurm/MACHINE.serial`` says which
one: a certificate issued since, for a new job, is left alone), and the
next job of that machine gets a new one.

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

from shoal.launch.slurm.provider import ENDED_BY_SLURM, LIVE, SlurmProvider, Squeued, machine_state
from shoal.launch.slurm.script import SCHEMA, job_script

__all__ = [
    "ENDED_BY_SLURM",
    "LIVE",
    "SCHEMA",
    "SlurmProvider",
    "Squeued",
    "job_script",
    "machine_state",
]

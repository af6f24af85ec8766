"""The job script of a slurm pool's machine, and what a slurm pool may say.

:func:`job_script` is plain text, printable: what ``sbatch`` is given, kept
as ``STATE/slurm/MACHINE.sh``. It holds no secret (see :mod:`shoal.launch.slurm`).
"""

from __future__ import annotations

import math
import os
import shlex
from pathlib import Path

from shoal.agent.client import TlsFiles
from shoal.exceptions import BadInput
from shoal.launch.contract import FieldSpec, Machine, Pool, ProviderSchema, Site, label_args

__all__ = ["SCHEMA", "check", "exits_folder", "job_script", "parse_tags", "tags"]

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


def tags(site: Site, pool: str, machine: str) -> str:
    """The job's comment: what finds it again (``shoal-boss`` this state folder's boss)."""
    return (
        f"shoal-boss={site.boss_tag()},shoal-pool={pool},shoal-machine={machine},"
        f"shoal-owner={site.launcher}"
    )


def parse_tags(comment: str) -> dict[str, str]:
    """The ``shoal-…`` tags a job's comment holds."""
    pairs = (part.partition("=") for part in comment.split(","))
    return {k: v for k, sep, v in pairs if sep and k.startswith("shoal-")}


def _walltime(pool: Pool) -> float | None:
    value = pool.fields.get("walltime")
    return float(value) if value is not None else None


def check(pool: Pool) -> None:
    """BadInput, in one line, for what the pool says that sbatch could not take."""
    _extra_lines(pool)


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
    tls: TlsFiles | None = None,
) -> str:
    """The batch script of one machine's job: its options, then what starts its agent.

    It holds no secret: the token is read from ``token_file``, which the job
    removes as soon as it has opened it; ``tls`` names the files the agent
    checks the boss with and proves itself with (its key's path, not its key).
    """
    fields = pool.fields
    directives = [
        f"--job-name=shoal-{machine.name}",
        f"--comment={tags(site, pool.name, machine.name)}",
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
    # Relative: to the job's folder, the state folder.
    workdir = os.path.expanduser(str(fields.get("workdir") or site.work))
    slots = str(pool.slots) if pool.slots else '"${SLURM_CPUS_ON_NODE:-1}"'
    agent = [
        '"$python"',
        q(str(pyz)),
        q(f"--boss={boss_url}"),
        q(f"--name={machine.name}"),
        f"--slots={slots}",
        q(f"--workdir={workdir}"),
        "--token-file=/dev/stdin",
        *(q(a) for a in _tls_args(tls)),
        *(q(a) for a in label_args(pool.labels)),
    ]
    if site.log_cap is not None:
        agent.append(f"--log-cap={site.log_cap}")
    lines += [
        "#",
        f"# shoal's worker for machine {machine.name} of pool {pool.name}, written by shoal.",
        "# The boss's token is not in this script: the file below holds it until the job",
        "# starts; the job opens it, removes it, and gives it to the worker on its stdin.",
        *(
            [
                "# The worker proves itself to the boss with a certificate of its own, which",
                "# shoal revokes when this job has ended.",
            ]
            if tls is not None and tls.cert
            else []
        ),
        "set -u",
        f"token={q(str(token_file))}",
        f"python={q(python)}",
        f"exit_file={q(str(exits_folder(site)))}/$SLURM_JOB_ID.exit",
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


def _tls_args(tls: TlsFiles | None) -> list[str]:
    """The agent's ``--ca``, ``--cert`` and ``--key`` options for these files."""
    if tls is None:
        return []
    given = (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key))
    return [f"--{option}={path}" for option, path in given if path]


def exits_folder(site: Site) -> Path:
    """Where jobs write their agent's exit code (``JOBID.exit``)."""
    return site.root / "slurm" / "exits"

"""Runs: ``shoal run`` and ``shoal flow`` on this machine; ``submit``, ``cancel`` and ``retry`` on a boss."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.common import (
    BossOpt,
    DataOpt,
    DataOptionOpt,
    DbOpt,
    FreshOpt,
    HostsOpt,
    JsonOpt,
    LeaseOpt,
    LogCapOpt,
    SpeculateMinOpt,
    StateOpt,
    TokenOpt,
    _client,
    _datastore,
    _inventory,
    _log_cap,
    _one_or_more,
    _state,
    app,
    console,
)
from shoal.cli.render import plural
from shoal.client import BossClient, OfflineClient
from shoal.exceptions import BadInput, BossError

__all__ = ["cancel", "flow", "retry", "run", "submit"]

JobsOpt = Annotated[
    int | None,
    typer.Option(
        "-j",
        "--jobs",
        metavar="N",
        show_default=False,
        help="Workers on this machine (default: one per core; none with --hosts or --pool, "
        "where -j N adds N).",
    ),
]


def _local_workers(jobs: int | None, machines_given: bool) -> int:
    """How many workers to start here: ``-j``, else one per core (none beside other machines).

    ``-j 0`` means "none here", which only makes sense when --hosts or --pool
    bring workers elsewhere: alone it would start a run that no worker ever takes.
    """
    if jobs is None:
        return 0 if machines_given else os.cpu_count() or 1
    if jobs < 0 or (jobs == 0 and not machines_given):
        raise BadInput(
            f"-j {jobs}: give the number of workers to start here, 1 or more "
            "(leave -j out for one per core; -j 0 only with --hosts or --pool)"
        )
    return jobs


@app.command(
    epilog="Examples:\n"
    "  shoal run tasks.yaml -j 4\n"
    "  shoal run tasks.yaml --hosts hosts.yaml   # one worker on each ssh host"
)
def run(
    file: Annotated[str, typer.Argument(metavar="FILE", help="The task file (YAML or JSON).")],
    jobs: JobsOpt = None,
    slots: Annotated[
        int,
        typer.Option(
            "--slots",
            metavar="N",
            callback=_one_or_more("--slots"),
            help="Slots per local worker.",
        ),
    ] = 1,
    state: StateOpt = None,
    db: DbOpt = None,
    hosts: HostsOpt = None,
    pool: Annotated[
        Path | None,
        typer.Option(
            "--pool",
            metavar="FILE",
            help="A pool file (pools.yaml): machines to bring up for the run and take down after.",
        ),
    ] = None,
    as_json: JsonOpt = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No progress; a summary only when a task did not succeed."
        ),
    ] = False,
    fresh: FreshOpt = False,
    lease: LeaseOpt = 30.0,
    speculate_min: SpeculateMinOpt = 30.0,
    log_cap: LogCapOpt = None,
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
) -> None:
    """Run a task file on this machine, start to end: boss, workers, progress, summary."""
    cap = _log_cap(log_cap)
    inventory = _inventory(hosts)
    if inventory is not None:
        from shoal.launch.ssh.client import connect_ahead

        connect_ahead(inventory.hosts)  # the handshakes overlap with what follows
    from shoal.cli.progress import run_command
    from shoal.spec import pools as pool_files

    pools = list(pool_files.load(pool).pools) if pool is not None else []
    machines_given = inventory is not None or bool(pools)
    sd = _state(state)
    location, options = _datastore(sd, data, data_option)
    code = run_command(
        file,
        jobs=_local_workers(jobs, machines_given),
        hosts=inventory,
        pools=pools,
        slots=slots,
        state=sd,
        db=db,
        data=(location, options),
        as_json=as_json,
        quiet=quiet,
        lease=lease,
        fresh=fresh,
        speculate_min=speculate_min,
        log_cap=cap,
    )
    raise typer.Exit(code)


@app.command(
    epilog="Examples:\n  shoal flow '(a | b); c' --defs steps.py   # a and b side by side, then c"
)
def flow(
    expression: Annotated[
        str, typer.Argument(metavar="FLOW", help='The flow, e.g. "(a | b | c); d; a + b + c + d".')
    ],
    defs: Annotated[
        Path,
        typer.Option(
            "--defs", metavar="FILE", help="Python file whose functions return each task's command."
        ),
    ],
    jobs: JobsOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress; print only the result.")
    ] = False,
    fresh: FreshOpt = False,
    log_cap: LogCapOpt = None,
) -> None:
    """Run a flow of tasks defined as Python functions, on this machine; print its result."""
    from shoal.api import Run, functions_as_tasks
    from shoal.cli.progress import run_spec

    run = Run(defs.stem)
    functions_as_tasks(defs, run)
    spec = run.flow(expression).spec()
    code = run_spec(
        spec,
        jobs=_local_workers(jobs, False),
        slots=1,
        state=_state(state),
        as_json=as_json,
        quiet=quiet,
        fresh=fresh,
        print_result=True,
        log_cap=_log_cap(log_cap),
    )
    raise typer.Exit(code)


@app.command(
    epilog="Examples:\n"
    "  shoal submit tasks.yaml\n"
    "  shoal submit tasks.yaml --boss https://boss.example.org:8765 -q"
)
def submit(
    file: Annotated[str, typer.Argument(metavar="FILE", help="The task file.")],
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the run id (for scripts).")
    ] = False,
) -> None:
    """Submit a task file to a running boss; prints the run's id, name and task count."""
    from shoal import spec as specs

    spec = specs.load(file)
    with BossClient.find(boss, token, _state(state)) as client:
        run_id = client.submit(spec)
        if quiet:
            print(run_id)
            return
        view = client.run(run_id)
        total = int(view["total"])
        print(f"run {run_id} {view['name']}: {total} task{'' if total == 1 else 's'} submitted")
        try:
            coming = _workers_coming(client)
        except BossError:
            coming = True  # the run is in: a question this token may not ask fails no submit
        if not coming:
            sys.stderr.write(
                f"shoal: warning: no worker is connected to {client.url}: the run waits for one; "
                f"start one with 'shoal worker --boss {client.url}'\n"
            )


def _workers_coming(client: BossClient) -> bool:
    """Whether a worker is connected, or a machine that will run one is on its way."""
    from shoal.launch.contract import LIVE_STATES

    if any(w["state"] == "active" for w in client.workers()):
        return True
    return any(m.get("state") in LIVE_STATES for m in client.machines())


@app.command(
    epilog=(
        "Examples:\n  shoal cancel sweep        # the latest run named sweep\n"
        "  shoal cancel 12 --task sim-3"
    )
)
def cancel(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id or name.")],
    task: Annotated[
        str | None,
        typer.Option(
            "--task", metavar="NAME", help="Cancel only this task (and what runs after it)."
        ),
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Cancel a run: its unfinished tasks stop and will not start."""
    client = _client(boss, token, state)
    run_id = client.run(run_ref)["run"]
    # Without a boss the database is changed here, as the boss would have done it.
    how = f" in {client.url} (no boss runs it)" if isinstance(client, OfflineClient) else ""
    if task is not None:
        n = client.cancel_task(run_id, task)
        after = f" ({plural(n - 1, 'task')} after it will not run)" if n > 1 else ""
        console.print(f"run {run_id}: task {task} cancelled{how}{after}")
        return
    n = client.cancel(run_id)
    console.print(f"run {run_id}: {plural(n, 'task')} cancelled{how}")


@app.command(epilog="Examples:\n  shoal retry sweep\n  shoal retry 12 --task sim-3")
def retry(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help="Run id or name.")],
    task: Annotated[
        str | None,
        typer.Option(
            "--task", metavar="NAME", help="Run only this failed or cancelled task again."
        ),
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Run a run's failed, upstream-failed and cancelled tasks again."""
    client = _client(boss, token, state)
    run_id = client.run(run_ref)["run"]
    n = client.retry_task(run_id, task) if task is not None else client.retry(run_id)
    console.print(f"run {run_id}: {plural(n, 'task')} will run again")

"""What happened: ``shoal status``, ``tasks``, ``logs``, ``results``, ``events``, ``workers``, ``bosses``."""

from __future__ import annotations

import codecs
import difflib
import itertools
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from shoal import protocol as p
from shoal.cli import render
from shoal.cli.common import (
    BossOpt,
    JsonOpt,
    RunArg,
    StateOpt,
    TokenOpt,
    _client,
    _emit_json,
    app,
    console,
)
from shoal.client import BossClient, Client
from shoal.exceptions import BadInput, NotFound

__all__ = ["bosses", "events", "logs", "results", "status", "tasks", "workers"]


@app.command()
def status(
    run_ref: RunArg = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Redraw until the run ends.")
    ] = False,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a run's state and counts (or every run, with 'all')."""
    client = _client(boss, token, state)
    if run_ref == "all":
        runs = client.runs()
        _emit_json(runs) if as_json else console.print(render.run_table(runs))
        return
    view = client.run(run_ref)
    if as_json:
        _emit_json(view)
        return
    if not watch:
        render.run_summary(console, view)
        _pools(client)
        return
    with Live(console=console, refresh_per_second=4) as live:
        while True:
            view = client.run(view["run"])
            tasks = client.tasks(view["run"], ["running", "failed"])
            from rich.console import Group

            summary = Console(record=True, width=console.width, emoji=False)
            with summary.capture():
                render.run_summary(summary, view)
            live.update(
                Group(
                    render.literal(summary.export_text(styles=False)),
                    render.task_table(tasks[:30]),
                )
            )
            if view["state"] != "running":
                break
            time.sleep(0.5)


def _pools(client: Client) -> None:
    """The pools' size and cost in one line, when shoal started machines here."""
    from shoal.cli.machines import with_usage

    machines = with_usage(client.machines(), time.time())
    if machines:
        console.print(render.pools_line(machines), highlight=False)


@app.command()
def tasks(
    run_ref: RunArg = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only", metavar="STATE", help="Only tasks in this state (repeatable), e.g. failed."
        ),
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a run's tasks with state, attempts, exit code, result, worker, duration."""
    for name in only or ():
        if name not in p.TASK_STATES:
            close = difflib.get_close_matches(name, p.TASK_STATES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise BadInput(
                f"--only {name[:40]!r}: no such task state{hint}; "
                f"the states are {', '.join(p.TASK_STATES)}"
            )
    if state is not None and str(state) in p.TASK_STATES and not state.exists():
        raise BadInput(
            f"--state names the state folder, and there is no folder '{state}': "
            f"to list the {state} tasks, use --only {state}"
        )
    client = _client(boss, token, state)
    rows = client.tasks(run_ref, only)
    if as_json:
        _emit_json(rows)
    else:
        console.print(render.task_table(rows))


@app.command()
def logs(
    task: Annotated[str, typer.Argument(help="Task name.")],
    run_ref: Annotated[
        str | None, typer.Option("--run", help="Run id or name (default: latest).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Wait for the task to finish and print its log.")
    ] = False,
    attempt: Annotated[
        int | None, typer.Option("--attempt", help="Attempt number (default: the latest).")
    ] = None,
    tail: Annotated[
        int | None, typer.Option("--tail", "-n", min=0, help="Print only the last N lines.")
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Print a task's log (stdout and stderr of its commands)."""
    client = _client(boss, token, state)
    if follow and isinstance(client, BossClient):
        _follow(client, run_ref, task, tail)
        return
    view = client.task(run_ref, task)
    if not view["attempt_list"]:
        raise BadInput(f"task '{task}' has not run yet (state: {view['state']})")
    # Streamed: a log may be as long as the workers' --log-cap.
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    ending = ""
    for chunk in itertools.chain(client.log_chunks(run_ref, task, attempt, tail), [b""]):
        text = decoder.decode(chunk, final=not chunk)
        if text:
            sys.stdout.write(text)
            ending = text[-1]
    if ending and ending != "\n":
        sys.stdout.write("\n")
    last = view["attempt_list"][-1]
    if last["cause"]:
        render.console(stderr=True).print(
            f"attempt {last['number']} on {last['worker']}: {last['cause']}",
            style="red",
            markup=False,
            highlight=False,
        )


def _follow(client: BossClient, run_ref: str | None, task: str, tail: int | None = None) -> None:
    """Print a task's log as it grows, across attempts, until the task ends.

    With ``tail``, the first attempt seen starts from its last ``tail`` lines.
    """
    offset, attempt = 0, ""
    while True:
        active = client.task(run_ref, task)["state"] in ("waiting", "ready", "running")
        try:
            data, number, running, _ = client.log_from(run_ref, task, offset)
        except NotFound:
            if not active:
                raise
            time.sleep(0.5)  # not started yet
            continue
        if number and number != attempt:
            if attempt:
                sys.stdout.write(f"── attempt {number} ──\n")
                tail = None  # a new attempt: all of it
            attempt = number
            data, _, running, offset = client.log_from(run_ref, task, 0, tail=tail)
        if data:
            sys.stdout.write(data.decode("utf-8", "replace"))
            sys.stdout.flush()
            offset += len(data)
        elif not active and not running:
            break
        else:
            time.sleep(0.5)
    last = client.task(run_ref, task)["attempt_list"]
    if last and last[-1]["cause"]:
        render.console(stderr=True).print(
            f"attempt {last[-1]['number']} on {last[-1]['worker']}: {last[-1]['cause']}",
            style="red",
            markup=False,
            highlight=False,
        )


@app.command()
def results(
    run_ref: RunArg = None,
    folder: Annotated[
        Path | None,
        typer.Argument(metavar="[DIR]", help="With --outputs: where the outputs go."),
    ] = None,
    outputs: Annotated[
        bool,
        typer.Option("--outputs", help="Copy the run's outputs into DIR, a folder per task."),
    ] = False,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the results tasks wrote to $SHOAL_RESULT (or their last stdout line).

    With --outputs RUN DIR: copy the run's outputs out instead.
    """
    if outputs and folder is None:
        raise BadInput("shoal results --outputs RUN DIR: give the run and the folder to copy into")
    if folder is not None and not outputs:
        raise BadInput(f"'{folder}': shoal results takes one run; to copy outputs, add --outputs")
    client = _client(boss, token, state)
    if outputs and folder is not None:
        from shoal.cli.data import copy_outputs

        copy_outputs(client, run_ref, folder, state)
        return
    data = client.results(run_ref)
    if as_json:
        _emit_json(data)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("task")
    table.add_column("result", overflow="fold")
    for name, value in data.items():
        table.add_row(render.literal(name), render.short(value, 200))
    console.print(table)


@app.command()
def workers(
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the workers the boss knows."""
    client = _client(boss, token, state)
    rows = client.workers()
    _emit_json(rows) if as_json else console.print(render.worker_table(rows))


@app.command()
def bosses(
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the bosses serving the database, and which one does the housekeeping."""
    client = _client(boss, token, state)
    rows = client.bosses()
    _emit_json(rows) if as_json else console.print(render.boss_table(rows))


@app.command()
def events(
    run_ref: RunArg = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List state changes, oldest first."""
    client = _client(boss, token, state)
    run_id = client.run(run_ref)["run"]
    rows = client.events(run_id)
    if as_json:
        _emit_json(rows)
        return
    table = Table(box=None, header_style="bold")
    for col in ("time", "event", "task", "attempt", "worker", "detail"):
        table.add_column(col)
    for e in rows:
        table.add_row(
            time.strftime("%H:%M:%S", time.localtime(e["time"])),
            e["kind"],
            str(e["task_id"] or ""),
            str(e["attempt_id"] or ""),
            str(e["worker_id"] or ""),
            render.literal(e["detail"]),
        )
    console.print(table)

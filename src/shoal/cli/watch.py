"""What happened: ``shoal status``, ``tasks``, ``logs``, ``results``, ``events``, ``workers``, ``bosses``."""

from __future__ import annotations

import codecs
import difflib
import itertools
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from shoal import protocol as p
from shoal.cli import render
from shoal.cli.common import (
    BossOpt,
    JsonOpt,
    StateOpt,
    TokenOpt,
    _client,
    _emit_json,
    _state,
    app,
    console,
)
from shoal.client import BossClient, Client, OfflineClient
from shoal.exceptions import BadInput, BossUnreachable, NotFound
from shoal.launch.contract import LIVE_STATES

__all__ = ["bosses", "events", "logs", "results", "status", "tasks", "workers"]


RunRef = Annotated[
    str | None,
    typer.Argument(metavar="RUN", help="Run id or name (default: the latest run)."),
]


def _examples(*lines: str) -> str:
    """A command's help epilog: ``Examples:`` and the command lines (kept as lines by the app)."""
    return "Examples:\n" + "\n".join(f"  {line}" for line in lines)


@app.command(
    epilog=_examples("shoal status --watch", "shoal status all"),
)
def status(
    run_ref: RunRef = None,
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
        if view.get("no_boss"):  # a run whose boss was killed: nothing moves it on
            console.print(view["no_boss"], style="yellow", highlight=False)
        _pools(client)
        return
    _watch(client, int(view["run"]), state)


def _watch(client: Client, run_id: int, state: Path | None) -> None:
    """Redraw a run's summary and its running and failed tasks until it ends.

    When the boss goes (``shoal run`` ended, or the boss stopped), the state
    folder's database tells the rest: the last frame is the run's final state.
    """
    note: Text | None = None
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            try:
                view = client.run(run_id)
                shown = client.tasks(run_id, ["running", "failed"])
            except BossUnreachable:
                sd = _state(state)
                if isinstance(client, OfflineClient) or not sd.has_database():
                    raise
                client = OfflineClient(sd)
                note = Text(f"the boss is gone: as recorded in {sd.root}", style="dim")
                continue
            frame = _watch_frame(view, shown, console.width, console.height)
            if note is not None:
                frame.renderables.append(note)
            live.update(frame)
            if view["state"] != "running":
                break
            if isinstance(client, OfflineClient):
                # No boss: nothing will change the run; say how to carry it on.
                frame.renderables.append(
                    Text(
                        "no boss runs this run now: start 'shoal boss' to carry it on",
                        style="yellow",
                    )
                )
                live.update(frame)
                break
            time.sleep(0.5)
    if not console.is_terminal:
        console.line()  # Live leaves a piped frame's last line open


def _watch_frame(
    view: dict[str, Any], shown: list[dict[str, Any]], width: int, height: int
) -> Group:
    """One frame of ``status --watch``: the summary, then running and failed tasks."""
    now = time.time()
    lines: list[Any] = list(render.run_summary_lines(view, now))
    shown.sort(key=lambda t: (t["state"] != "running", t["started"] or now, t["name"]))
    room = max(3, height - len(lines) - 4)
    if shown:
        lines.append(render.task_table(shown[:room], now, width))
        if len(shown) > room:
            lines.append(Text(f"… and {len(shown) - room} more (shoal tasks --only running)"))
    return Group(*lines)


def _pools(client: Client) -> None:
    """The pools' size and cost in one line, when shoal started machines here."""
    from shoal.cli.machines import with_usage

    machines = with_usage(client.machines(), time.time())
    if any(m["state"] in LIVE_STATES or m.get("cost") is not None for m in machines):
        console.print(render.pools_line(machines), highlight=False)


@app.command(epilog=_examples("shoal tasks --only failed", "shoal tasks sweep --json"))
def tasks(
    run_ref: RunRef = None,
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
        console.print(render.task_table(rows, width=console.width))


@app.command(epilog=_examples("shoal logs train-3 -n 20", "shoal logs train-3 --attempt 1"))
def logs(
    task: Annotated[str, typer.Argument(metavar="TASK", help="Task name.")],
    run_ref: Annotated[
        str | None,
        typer.Option("--run", metavar="RUN", help="Run id or name (default: the latest run)."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Wait for the task to finish and print its log.")
    ] = False,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", metavar="N", help="Attempt number (default: the latest)."),
    ] = None,
    tail: Annotated[
        int | None,
        typer.Option("--tail", "-n", metavar="N", help="Print only the last N lines."),
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Print a task's log (stdout and stderr of its commands).

    A task reused from an earlier run (cached) shows the log of the run that
    produced its result.
    """
    if tail is not None and tail < 0:
        raise BadInput(f"--tail {tail}: give how many lines to print, 0 or more")
    client = _client(boss, token, state)
    view = client.task(run_ref, task)
    where: str | int | None = run_ref
    err = render.console(stderr=True)
    if view.get("cached") and not view["attempt_list"] and view.get("source_run"):
        where = int(view["source_run"])
        view = client.task(where, task)
        err.print(
            f"task '{task}' was reused from run {where} (cached): its log from that run",
            style="dim",
            markup=False,
            highlight=False,
        )
    elif follow and isinstance(client, BossClient):
        _follow(client, run_ref, task, tail)
        return
    if not view["attempt_list"]:
        raise BadInput(_no_log(view))
    shown = _attempt(view, attempt)
    if attempt is not None:
        total = len(view["attempt_list"])
        err.print(
            f"── attempt {shown['number']} of {total} on {shown['worker']} ({shown['state']}) ──",
            markup=False,
            highlight=False,
        )
    # Streamed: a log may be as long as the workers' --log-cap.
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    ending = ""
    for chunk in itertools.chain(client.log_chunks(where, task, attempt, tail), [b""]):
        text = decoder.decode(chunk, final=not chunk)
        if text:
            sys.stdout.write(text)
            ending = text[-1]
    if ending and ending != "\n":
        sys.stdout.write("\n")
    sys.stdout.flush()
    if shown["cause"]:
        err.print(
            f"attempt {shown['number']} on {shown['worker']}: {shown['cause']}",
            style="red",
            markup=False,
            highlight=False,
        )


def _no_log(view: dict[str, Any]) -> str:
    """Why a task that never started has no log: it waits, or it will not run and why."""
    name, state = view["name"], view["state"]
    if state in ("waiting", "ready"):
        return f"task '{name}' has not run yet ({state}): no log so far"
    why = view.get("cause") or f"it is {state}"
    return f"task '{name}' will not run, so it has no log: {why}"


def _attempt(view: dict[str, Any], number: int | None) -> dict[str, Any]:
    """The attempt of a task's view numbered ``number`` (None: the latest); one line if none."""
    attempts: list[dict[str, Any]] = view["attempt_list"]
    if number is None:
        return attempts[-1]
    for a in attempts:
        if a["number"] == number:
            return a
    raise NotFound(f"task '{view['name']}' has no attempt {number}")


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


@app.command(epilog=_examples("shoal results sweep --table", "shoal results sweep --outputs out/"))
def results(
    run_ref: RunRef = None,
    folder: Annotated[
        Path | None,
        typer.Argument(metavar="DIR", help="With --outputs: where the outputs go."),
    ] = None,
    outputs: Annotated[
        bool,
        typer.Option("--outputs", help="Copy the run's outputs into DIR, a folder per task."),
    ] = False,
    as_table: Annotated[
        bool,
        typer.Option(
            "--table",
            help="A row per task with a column per matrix key (with --json: each task's "
            "result, matrix values, after, start and end).",
        ),
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
    if as_table:
        rows = _result_rows(client, run_ref, data)
        _emit_json(rows) if as_json else console.print(_sweep_table(rows))
        return
    if as_json:
        _emit_json(data)
        return
    table = Table(box=None, header_style="bold")
    table.add_column("task")
    table.add_column("result", overflow="fold")
    for name, value in data.items():
        table.add_row(render.literal(name), render.short(value, 200))
    console.print(table)


def _result_rows(
    client: Client, run_ref: str | None, results: dict[str, Any]
) -> list[dict[str, Any]]:
    """Each task with a result: its name, result, matrix values, after, start and end."""
    return [
        {
            "task": t["name"],
            "result": results[t["name"]],
            "matrix": t["matrix"],
            "after": t["after"],
            "started": t["started"],
            "ended": t["ended"],
        }
        for t in client.tasks(run_ref)
        if t["name"] in results
    ]


def _sweep_table(rows: list[dict[str, Any]]) -> Table:
    """A sweep's results: a column per matrix key, then the result.

    Results that are JSON objects of a few keys get a column per key
    (``loss``, ``accuracy``), so a sweep reads as one table; any other
    result goes in a ``result`` column. A result key that is also a matrix
    key is left out where it equals the matrix value in every task, and is
    headed ``result.KEY`` where it does not.
    """
    keys = list(dict.fromkeys(k for r in rows for k in r["matrix"]))
    objects = [r for r in rows if isinstance(r["result"], dict)]
    fields = list(dict.fromkeys(k for o in objects for k in o["result"]))
    # A result key that repeats a matrix key with the same value in every
    # task says nothing new; one whose values differ is named result.KEY.
    fields = [
        f
        for f in fields
        if f not in keys or any(o["result"].get(f) != o["matrix"].get(f) for o in objects)
    ]
    if len(fields) > 8:
        fields = []  # too wide to spread: each object whole
    spread = [r for r in rows if isinstance(r["result"], dict) and fields]
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("task", overflow="fold")
    for key in keys:
        table.add_column(render.literal(key), no_wrap=True)
    for name in fields:
        head = f"result.{name}" if name in keys else name
        table.add_column(render.literal(head), overflow="fold")
    whole = len(spread) < len(rows)
    if whole:
        table.add_column("result", overflow="fold")
    for r in rows:
        cells = [render.literal(r["task"])]
        cells += [render.literal(r["matrix"].get(k, "")) for k in keys]
        value = r["result"]
        if isinstance(value, dict) and fields:
            cells += [render.short(value.get(f), 40) for f in fields]
        else:
            cells += [render.literal("")] * len(fields)
        if whole:
            cells.append(render.short(None if r in spread else value, 200))
        table.add_row(*cells)
    return table


# A worker that left this long ago is history: `shoal workers --all` lists it.
RECENT_WORKER = 300.0


@app.command(epilog=_examples("shoal workers", "shoal workers --all --json"))
def workers(
    every: Annotated[
        bool,
        typer.Option("--all", help="Every worker the boss ever had, not only the current ones."),
    ] = False,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the workers connected now, and those that left in the last five minutes."""
    client = _client(boss, token, state)
    rows = client.workers()
    if not every:
        rows = current_workers(rows, time.time())
    _emit_json(rows) if as_json else console.print(render.worker_table(rows))


def current_workers(rows: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The connected workers, and those that left in the last few minutes.

    A worker that left is not listed once a newer one has its name (the
    next run's ``local-1``), nor after :data:`RECENT_WORKER` seconds.
    """
    newest = {w["name"]: w["id"] for w in sorted(rows, key=lambda w: w["id"])}
    current = [
        w
        for w in rows
        if w["state"] == "active"
        or (newest[w["name"]] == w["id"] and now - w["last_sync"] <= RECENT_WORKER)
    ]
    # By name, numbers as numbers (local-2 before local-10): local workers
    # register in whatever order they start.
    return sorted(current, key=lambda w: (_natural(w["name"]), w["id"]))


def _natural(name: str) -> list[tuple[int, int | str]]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]


@app.command(epilog=_examples("shoal bosses"))
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


@app.command(epilog=_examples("shoal events", "shoal events sweep --json"))
def events(
    run_ref: RunRef = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a run's events (tasks started, failed, retried; workers lost), oldest first.

    Each names its task, the attempt's number and the worker; --json gives
    them as task_name, attempt_number and worker_name beside the ids.
    """
    client = _client(boss, token, state)
    run_id = client.run(run_ref)["run"]
    rows = client.events(run_id)
    if as_json:
        _emit_json(rows)
        return
    console.print(_event_table(rows, console.width))


def _event_table(rows: list[dict[str, Any]], width: int | None) -> Any:
    """Events a line each: time, event, task, attempt, worker, detail.

    Nothing is cut: the detail wraps between words in a column of its own
    where ``width`` leaves it room, else it has an indented line under its
    event; a line wider than ``width`` wraps between its columns.
    """
    heads = ["time", "event", "task", "attempt", "worker"]
    cells = [
        [
            time.strftime("%H:%M:%S", time.localtime(e["time"])),
            str(e["kind"]),
            _named(e.get("task_name"), e["task_id"]),
            _named(e.get("attempt_number"), e["attempt_id"], "id "),
            _named(e.get("worker_name"), e["worker_id"]),
        ]
        for e in rows
    ]
    details = [render.literal(e["detail"]) for e in rows]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(heads)]
    if render.note_beside(widths, details, width):
        table = Table(box=None, header_style="bold", pad_edge=False)
        for head, w in zip(heads, widths, strict=True):
            table.add_column(head, no_wrap=True, min_width=w)
        table.add_column("detail", overflow="fold")
        for row, detail in zip(cells, details, strict=True):
            table.add_row(*(render.literal(c) for c in row), detail)
        return table
    # Closer columns, where that makes an event fit on its line.
    wide = width is not None and sum(widths) + render.GAP * (len(widths) - 1) > width
    gap = 1 if wide else render.GAP
    lines = [render.padded([Text(h) for h in heads], widths, gap=gap)]
    lines[0].stylize("bold")
    for row, detail in zip(cells, details, strict=True):
        lines.append(render.padded([render.literal(c) for c in row], widths, gap=gap))
        if detail.plain:
            lines.append(Text("    ") + detail)
    return Group(*lines)


def _named(name: Any, row_id: int | None, prefix: str = "#") -> str:
    """A name (or number) for people, the row's id where there is none, or nothing."""
    if name is not None:
        return str(name)
    return f"{prefix}{row_id}" if row_id is not None else ""

"""``shoal run``: a boss, local workers and one run, to the end, with progress."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from shoal import spec as specs
from shoal.cli import render
from shoal.client import BossClient
from shoal.exceptions import BadInput
from shoal.launch.contract import Pool
from shoal.session import LocalSession, check_fits
from shoal.spec.inventory import Inventory
from shoal.statedir import StateDir

if TYPE_CHECKING:  # the scheduler (and SQLAlchemy) load with the boss
    from shoal.scheduler import Unplaceable

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


class RateColumn(ProgressColumn):
    """Tasks per second that ran here, and the time left at that pace.

    From the run's view (the bar's ``view`` field), not the bar's count:
    cached tasks count as done at once and would make the pace absurd.
    """

    def render(self, task: Task) -> Text:
        view = task.fields.get("view")
        if view is None:
            return Text("")
        rate, left = render.pace(view, time.time())
        if rate is None:
            return Text("")
        eta = f"  ETA {render.seconds(left)}" if left is not None else ""
        return Text(f"{rate:,.1f}/s{eta}", style="progress.data.speed")


def ended_badly(counts: dict[str, int]) -> Text:
    """The bar's count of tasks that did not succeed, in the summary's words.

    ``0 failed`` until one fails; then each state that has any, as the
    summary's counts line says them (``1 failed  1 upstream_failed``).
    """
    bad = [s for s in ("failed", "upstream_failed", "cancelled") if counts.get(s)]
    if not bad:
        return Text("0 failed", style="red")
    return render.counts_text({s: counts[s] for s in bad})


class EndedBadlyColumn(ProgressColumn):
    """:func:`ended_badly` of the run's view (the bar's ``view`` field)."""

    def render(self, task: Task) -> Text:
        view = task.fields.get("view")
        return ended_badly(view["counts"] if view is not None else {})


def bar_style(counts: dict[str, int]) -> str:
    """The bar's colour: red once a task failed, yellow if some were cancelled, else green."""
    if counts.get("failed") or counts.get("upstream_failed"):
        return "red"
    if counts.get("cancelled"):
        return "yellow"
    return "green"


def run_command(file: str, **options: Any) -> int:
    """`shoal run FILE`."""
    return run_spec(specs.load(file), **options)


def run_spec(
    spec: specs.RunSpec,
    *,
    jobs: int,
    slots: int,
    state: StateDir,
    as_json: bool,
    db: str | None = None,
    data: tuple[str, dict[str, str]] | None = None,
    hosts: Inventory | None = None,
    pools: Sequence[Pool] = (),
    quiet: bool,
    lease: float = 30.0,
    fresh: bool = False,
    speculate_min: float = 30.0,
    print_result: bool = False,
    log_cap: int | None = None,
) -> int:
    host_slots = [h.slots for h in hosts.hosts] if hosts is not None else []
    pool_slots = [pool.slots or 1 for pool in pools]
    check_fits(
        spec, max([slots if jobs else 0, *host_slots, *pool_slots])
    )  # before anything starts
    console = render.console()
    err = render.console(stderr=True)
    show_progress = not as_json and not quiet and console.is_terminal
    started = time.time()
    # A SIGTERM to `shoal run` is handled like Ctrl-C: cancel, clean up, exit.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with LocalSession(
        state,
        workers=jobs,
        slots=slots,
        lease_seconds=lease,
        speculate_min=speculate_min,
        db=db,
        data=data,
        hosts=hosts,
        pools=pools,
        log_cap=log_cap,
    ) as session:
        _report_as_it_happens(session, err, as_json)
        run_id = session.submit(spec, reuse=not fresh)  # once every machine started or failed
        _report_failed_hosts(session, err, run_id)
        if not as_json and not quiet:
            err.print(_started(session, spec, run_id, state))
        warned: set[str] = set()

        def warn(view: dict[str, Any], out: Console = err) -> None:
            """Each warning of the run (a boss that cannot write, say) once, as it appears."""
            for line in view.get("warnings", []):
                if line not in warned and not as_json:
                    warned.add(line)
                    out.print(Text(f"warning: {line}", style="yellow"), soft_wrap=True)

        try:
            if show_progress:
                view = _wait_with_progress(session, run_id, console, warn)
            else:
                view = session.wait(run_id, warn)
        except KeyboardInterrupt:
            err.print(f"\ninterrupted: cancelling run {run_id} and stopping the workers…")
            try:
                session.cancel(run_id)
            finally:
                session.close(interrupt=True)
            return EXIT_INTERRUPTED
        assert session.client is not None
        client = session.client
        if as_json:
            _print_json(client, run_id, view)
        elif not quiet:
            _summary(console, client, spec, run_id, view, time.time() - started)
        else:
            if view["state"] != "succeeded":
                # Quiet keeps a run that went well silent, not one that went wrong.
                _failures(err, client, run_id)
                render.run_summary(err, view)
            if print_result and view.get("result") is not None:
                print(json.dumps(view["result"]))
    return EXIT_OK if view["state"] == "succeeded" else EXIT_FAILED


def _report_as_it_happens(session: LocalSession, err: Console, as_json: bool) -> None:
    """Workers that stopped, tasks no worker can take: each as it happens."""
    if not as_json:

        def lost(name: str, why: str) -> None:
            err.print(Text(f"worker {name} stopped: {why}"), soft_wrap=True)

        session.on_worker_exit = lost

        def machines(text: str) -> None:
            err.print(Text(text, style="dim"), soft_wrap=True)

        session.on_machines = machines

    def unplaceable(found: list[Unplaceable]) -> None:
        for need in found:
            err.print(Text(f"{need.sentence()}: failed", style="red"), soft_wrap=True)

    session.on_unplaceable = unplaceable


def _report_failed_hosts(session: LocalSession, err: Console, run_id: int) -> None:
    """Machines that could not start a worker; none at all is bad input (exit 2)."""
    for machine in session.failed:
        noun = "host" if machine.provider == "ssh" else "machine"
        err.print(Text(f"{noun} {machine.name}: {machine.detail}"))
    if session.failed and not session.machines() and session.sizer is None:
        session.cancel(run_id)
        if all(m.provider == "ssh" for m in session.failed):
            raise BadInput(
                "no host of the inventory could start a worker (see above); "
                "'shoal hosts check --hosts FILE' tells more"
            )
        raise BadInput("no machine of the pools could start a worker (see above)")


def _started(session: LocalSession, spec: specs.RunSpec, run_id: int, state: StateDir) -> Text:
    """The line that says the run started, and where it runs."""
    return Text.assemble(
        f"run {run_id} ",
        (spec.name, "bold"),
        f": {render.plural(len(spec.tasks), 'task')} on {session.where()} (state in {state.root})",
    )


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _wait_with_progress(
    session: LocalSession,
    run_id: int,
    console: Console,
    warn: Callable[[dict[str, Any], Console], None],
) -> dict[str, Any]:
    bar_column = BarColumn(complete_style="green", finished_style="green")
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", style="bold", markup=False),
        bar_column,
        MofNCompleteColumn(),
        TextColumn("[cyan]{task.fields[running]} running"),
        EndedBadlyColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        refresh_per_second=8,
    )
    with progress:
        bar = progress.add_task("run", total=None, running=0, view=None)

        def update(view: dict[str, Any]) -> None:
            counts = view["counts"]
            bar_column.complete_style = bar_column.finished_style = bar_style(counts)
            progress.update(
                bar,
                description=f"run {view['run']} {view['name']}",
                total=view["total"],
                completed=render.done_count(view),
                running=render.running_shown(view),
                view=view,
            )
            warn(view, progress.console)

        return session.wait(run_id, update, interval=0.2)


def _print_json(client: BossClient, run_id: int, view: dict[str, Any]) -> None:
    out = {
        "run": run_id,
        "name": view["name"],
        "state": view["state"],
        "counts": view["counts"],
        "result": view.get("result"),
        "tasks": client.tasks(run_id),
        "results": client.results(run_id),
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


def _failures(console: Console, client: BossClient, run_id: int) -> None:
    """The tasks that did not succeed, and the last lines of the failed ones' logs."""
    bad = client.tasks(run_id, ["failed", "upstream_failed", "cancelled"])
    bad.sort(key=lambda t: render.STATE_ORDER.index(t["state"]))
    if bad:
        console.print(render.task_table(bad[:20], width=console.width))
        if len(bad) > 20:
            console.print(f"… and {len(bad) - 20} more (shoal tasks --only failed)")
        for t in [t for t in bad if t["state"] == "failed" and t["attempts"]][:5]:
            text = client.log(run_id, t["name"], tail=8).rstrip("\n")
            lines = text.splitlines()[-8:] if text else ["(no output)"]
            console.print(Text(f"── last lines of {t['name']}'s log ──", style="bold red"))
            for line in lines:
                console.print(Text(line))


def _summary(
    console: Console,
    client: BossClient,
    spec: specs.RunSpec,
    run_id: int,
    view: dict[str, Any],
    elapsed: float,
) -> None:
    _failures(console, client, run_id)
    # The results of tasks nothing depends on are what a run is for.
    needed = {d for t in spec.tasks for d in t.after}
    sinks = [t.name for t in spec.tasks if t.name not in needed]
    results = client.results(run_id)
    with_result = [(n, results[n]) for n in sinks if n in results]
    shown = with_result[:10]
    if shown:
        table = Table(box=None, header_style="bold")
        table.add_column("task")
        table.add_column("result", overflow="fold")
        for name, value in shown:
            table.add_row(render.literal(name), render.short(value, 100))
        console.print(table)
        if len(with_result) > len(shown):
            console.print(f"… and {len(with_result) - len(shown)} more (shoal results)")
    render.run_summary(console, view)

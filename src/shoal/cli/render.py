"""How the command line shows runs, tasks and workers (Rich).

Everything that comes from users (names, results, causes, details) is put in
as :class:`~rich.text.Text`, never as a string: Rich reads a string as markup
and emoji codes, so a result ``:x: [bold]y[/bold]`` would print as an emoji and
bold ``y``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from shoal.launch.contract import LIVE_STATES

STATE_STYLE = {
    "succeeded": "green",
    "failed": "bold red",
    "upstream_failed": "red",
    "cancelled": "yellow",
    "running": "cyan",
    "ready": "blue",
    "waiting": "dim",
    "active": "green",
    "draining": "yellow",
    "stopping": "yellow",
    "stopped": "dim",
    "lost": "red",
    "requested": "dim",
    "starting": "blue",
    "preempted": "yellow",
}
STATE_ORDER = ("failed", "upstream_failed", "cancelled", "running", "ready", "waiting", "succeeded")


def console(*, stderr: bool = False) -> Console:
    """A console that prints no emoji codes, whoever wrote them."""
    return Console(stderr=stderr, emoji=False)


def literal(value: Any) -> Text:
    """A cell or line printed exactly as given (no markup, no emoji)."""
    return Text("" if value is None else str(value))


def styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def short(value: Any, width: int = 40) -> Text:
    """A value in at most ``width`` characters, literally."""
    if value is None:
        return Text("")
    text = value if isinstance(value, str) else json.dumps(value)
    return Text(text if len(text) <= width else text[: width - 1] + "…")


def plural(n: int, noun: str) -> str:
    """``1 task``, ``2 tasks``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def counts_text(counts: dict[str, int]) -> Text:
    out = Text()
    for state in STATE_ORDER:
        n = counts.get(state)
        if n:
            if out:
                out.append("  ")
            out.append(f"{n} {state}", style=STATE_STYLE.get(state, ""))
    return out


def done_count(view: dict[str, Any]) -> int:
    """Tasks a run has settled: every one but the unfinished and the cancelled ones.

    A cancelled run of 300 tasks with 12 finished is 12 done, not 300.
    """
    return int(view["total"] - view["active"] - view["counts"].get("cancelled", 0))


def ran_count(view: dict[str, Any]) -> int:
    """Tasks that ran in this run to an end: not those reused from an earlier run."""
    counts = view["counts"]
    ran = counts.get("succeeded", 0) + counts.get("failed", 0) - (view.get("cached") or 0)
    return max(0, int(ran))


def pace(view: dict[str, Any], now: float) -> tuple[float | None, float | None]:
    """Tasks per second that ran here, and the seconds left at that pace (None: unknown).

    Cached tasks take no time and are not counted: a rerun that reused every
    task has no pace, rather than billions of tasks a second.
    """
    elapsed = (view["finished"] or now) - view["created"]
    ran = ran_count(view)
    if ran == 0 or elapsed < 0.01:
        return None, None
    rate = ran / elapsed
    left = view["active"] / rate if view["state"] == "running" and view["active"] else None
    return rate, left


def running_shown(view: dict[str, Any]) -> int:
    """Running tasks, at most the connected workers' slots.

    A worker keeps a few tasks queued ahead when tasks are short; they are
    handed out (running, to the boss) but wait for a slot.
    """
    running = int(view["counts"].get("running", 0))
    slots = view.get("slots")
    return min(running, int(slots)) if slots is not None else running


def run_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("run", "name", "state", "done", "tasks", "counts", "age"):
        table.add_column(col)
    now = time.time()
    for r in runs:
        done = done_count(r)
        table.add_row(
            str(r["run"]),
            literal(r["name"]),
            styled(r["state"]),
            str(done),
            str(r["total"]),
            counts_text(r["counts"]),
            seconds(now - r["created"]) + " ago",
        )
    return table


def run_summary(console: Console, view: dict[str, Any]) -> None:
    """A run's state, counts, pace and result, a few lines."""
    for line in run_summary_lines(view, time.time()):
        console.print(line, soft_wrap=line.style == "yellow")


def run_summary_lines(view: dict[str, Any], now: float) -> list[Text]:
    """The lines of :func:`run_summary`: ``run 3 sweep  running  40/120 done in 1.2m  …``."""
    elapsed = max(0.0, (view["finished"] or now) - view["created"])
    rate, left = pace(view, now)
    head = Text.assemble(
        (f"run {view['run']} ", "bold"),
        (view["name"], "bold"),
        "  ",
        styled(view["state"]),
        f"  {done_count(view)}/{view['total']} done in {seconds(elapsed)}",
    )
    if rate is not None:
        head.append(f"  ({rate:,.1f} tasks/s)")
    if left is not None:
        head.append(f"  about {seconds(left)} left")
    lines = [head]
    counts = counts_text(view["counts"])
    if view.get("cached"):
        counts.append(
            f"  ({view['cached']} cached: unchanged since they last succeeded)", style="dim"
        )
    lines.append(counts)
    if view.get("final") and view.get("result") is not None:
        lines.append(
            Text.assemble(("result ", "bold"), (short(view["result"], 200).plain, "bold green"))
        )
    elif view.get("partial"):
        for name, value in view["partial"].items():
            lines.append(Text.assemble((f"{name} so far ", "bold"), short(value, 200).plain))
    for w in view.get("warnings", []):
        lines.append(Text(f"warning: {w}", style="yellow"))
    return lines


# Columns of a table are this far apart (Rich's padding, no edges).
GAP = 2
# A note (a cause, an event's detail) goes beside the row when its column is
# at least this wide (or the longest note fits); else on lines of its own.
NOTE_ROOM = 20


def note_beside(widths: list[int], notes: list[Text], width: int | None) -> bool:
    """Whether notes fit in a column after columns of these widths, wrapped between words."""
    if width is None:
        return True
    room = width - sum(widths) - GAP * len(widths)
    longest = max([len(n.plain) for n in notes] or [0])
    longest_word = max([len(w) for n in notes for w in n.plain.split()] or [0])
    return room >= longest or (room >= NOTE_ROOM and room >= longest_word)


def padded(
    cells: list[Text], widths: list[int], right: frozenset[int] = frozenset(), gap: int = GAP
) -> Text:
    """Cells in columns of these widths, ``gap`` apart, as one line (nothing cut)."""
    line = Text()
    for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
        fill = " " * max(0, w - len(cell.plain))
        if i:
            line.append(" " * gap)
        if i in right:
            line.append(fill)
        line.append_text(cell)
        if i not in right and i < len(cells) - 1:
            line.append(fill)
    line.rstrip()
    return line


def task_table(
    tasks: list[dict[str, Any]], now: float | None = None, width: int | None = None
) -> RenderableType:
    """Tasks with state, attempts, exit code, time taken (so far, if running), worker, result.

    Names, states and figures are never cut or split. A cause is shown whole,
    wrapped between words, in a column of its own where ``width`` leaves it
    room; else the causes follow the table, a ``task: cause`` line each.
    Where even the names and figures are wider than ``width``, each task's
    name has a line of its own, its figures indented below it.
    """
    now = time.time() if now is None else now
    notes = []
    for t in tasks:
        note = short(t["result"]) if t["state"] == "succeeded" else literal(t.get("cause"))
        if t.get("cached"):
            note = Text("(cached) ") + note
        notes.append(note)
    rows = []
    for t in tasks:
        took = t["duration"]
        if t["state"] == "running" and t.get("started") is not None:
            took = max(0.0, now - t["started"])
        exit_code = "" if t["exit_code"] is None else str(t["exit_code"])
        rows.append(
            [t["name"], t["state"], str(t["attempts"]), exit_code, seconds(took), t["worker"] or ""]
        )
    heads = ["task", "state", "attempts", "exit", "duration", "worker"]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(heads)]
    noted = any(n.plain for n in notes)
    fixed = sum(widths) + GAP * (len(widths) - 1)
    if width is not None and fixed > width:
        return _stacked_tasks(heads, rows, widths, notes)
    beside = noted and note_beside(widths, notes, width)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for head, w in zip(heads, widths, strict=True):
        right = head in ("attempts", "exit", "duration")
        table.add_column(head, no_wrap=True, min_width=w, justify="right" if right else "left")
    if beside:
        table.add_column("result / cause", overflow="fold")
    for row, note in zip(rows, notes, strict=True):
        name, state, *figures, worker = row
        extra = [note] if beside else []
        table.add_row(literal(name), styled(state), *figures, literal(worker), *extra)
    if beside or not noted:
        return table
    return Group(table, *_notes_below(tasks, notes))


def _notes_below(tasks: list[dict[str, Any]], notes: list[Text]) -> list[Text]:
    """``task: cause`` lines, the name whole and bold."""
    return [
        Text.assemble((t["name"], "bold"), ": ", note)
        for t, note in zip(tasks, notes, strict=True)
        if note.plain
    ]


def _stacked_tasks(
    heads: list[str], rows: list[list[str]], widths: list[int], notes: list[Text]
) -> Group:
    """Each task's name on a line, its figures (and cause) indented on the next."""
    right = frozenset({1, 2, 3})
    rest = widths[1:]
    lines = [
        Text(heads[0], style="bold"),
        Text("  ") + padded([Text(h) for h in heads[1:]], rest, right),
    ]
    lines[1].stylize("bold")
    for row, note in zip(rows, notes, strict=True):
        name, state, *figures = row
        cells = [styled(state), *(literal(f) for f in figures)]
        lines.append(literal(name))
        lines.append(Text("  ") + padded(cells, rest, right))
        if note.plain:
            lines.append(Text("  ") + note)
    return Group(*lines)


def _host_state(check: Any) -> Text:
    if not check.reachable:
        return Text("unreachable", style="red")
    if check.error is not None:
        return Text("no python", style="red")
    return Text("ok", style="green")


def host_check_table(checks: list[Any]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("host", "address", "state", "python", "free disk", "connect", "error"):
        table.add_column(col)
    for c in checks:
        table.add_row(
            literal(c.name),
            literal(c.address),
            _host_state(c),
            literal(c.python),
            f"{c.free_disk_gb:.1f} GB" if c.free_disk_gb is not None else "",
            f"{c.connect_seconds * 1000:.0f} ms" if c.connect_seconds is not None else "",
            literal(c.error),
        )
    return table


def boss_table(bosses: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("boss", "url", "host", "pid", "state", "housekeeper", "last seen"):
        table.add_column(col)
    now = time.time()
    for b in bosses:
        table.add_row(
            str(b["id"]),
            literal(b["url"]),
            literal(b["host"]),
            str(b["pid"]),
            styled(b["state"]),
            "yes" if b["housekeeper"] else "",
            seconds(now - b["last_seen"]) + " ago",
        )
    return table


def machine_table(machines: list[dict[str, Any]]) -> Table:
    """What shoal started, where, since when, for how long, at what price and cost so far.

    The price and cost columns are there when a machine's price is known.
    Names and states are never cut short; an address or a detail folds.
    """
    table = Table(box=None, header_style="bold", pad_edge=False)
    priced = any(m.get("price") is not None for m in machines)

    def whole(header: str, key: str) -> None:
        longest = max([len(header), *(len(str(m[key])) for m in machines)])
        table.add_column(header, no_wrap=True, min_width=min(longest, 40))

    whole("machine", "name")
    whole("pool", "pool")
    whole("provider", "provider")
    table.add_column("address", overflow="fold", min_width=9)
    whole("state", "state")
    # Where the terminal is too narrow for all, the last columns go first.
    for col in ("since", "uptime", *(("cost", "price/h") if priced else ()), "slots"):
        table.add_column(col, no_wrap=True)
    table.add_column("detail", overflow="fold", min_width=6)
    now = time.time()
    for m in machines:
        price = m.get("price")
        row: list[str | Text] = [
            literal(m["name"]),
            literal(m["pool"]),
            literal(m["provider"]),
            literal(m["address"]),
            styled(m["state"]),
            seconds(now - m["since"]) + " ago",
            seconds(m.get("uptime")),
        ]
        if priced:
            row += [dollars(m.get("cost")), "-" if price is None else f"{price:.4g}"]
        row.append(str(m["slots"]))
        table.add_row(*row, short(m.get("detail") or "", 60))
    return table


def dollars(cost: float | None) -> str:
    """An estimated cost: ``$0.42``; ``-`` where the price is not known."""
    return "-" if cost is None else f"${cost:.2f}"


def pools_line(machines: list[dict[str, Any]]) -> Text:
    """The pools' size and cost in one line: ``pools: cpu 3 running 1 starting · hpc 0 · $1.27 so far``.

    Each pool's live machines by state (a pool with none: 0); the cost is
    that of every machine recorded whose price is known (left out if none).
    """
    live: dict[str, dict[str, int]] = {}
    for m in machines:
        counts = live.setdefault(m["pool"], {})
        if m["state"] in LIVE_STATES:
            counts[m["state"]] = counts.get(m["state"], 0) + 1
    parts = []
    for pool, counts in live.items():
        said = " ".join(
            f"{counts[s]} {s}" for s in ("running", "starting", "requested") if s in counts
        )
        parts.append(f"{pool} {said or 0}")
    costs = [m["cost"] for m in machines if m.get("cost") is not None]
    if costs:
        parts.append(f"{dollars(sum(costs))} so far")
    return Text.assemble(("pools: ", "bold"), " · ".join(parts))


def worker_state(worker: dict[str, Any]) -> str:
    """A worker's state as the table says it: ``draining`` or ``stopping`` once asked to."""
    if worker["state"] == "active":
        order = worker.get("order")
        if order == "drain":
            return "draining"
        if order == "stop":
            return "stopping"
    return str(worker["state"])


def worker_table(workers: list[dict[str, Any]]) -> Table:
    """The workers, each with the machine shoal started it on (``-``: one started by hand)."""
    table = Table(box=None, header_style="bold")
    columns = ("worker", "machine", "host", "state", "slots", "running", "done", "failed")
    for col in (*columns, "last sync"):
        table.add_column(col)
    now = time.time()
    for w in workers:
        table.add_row(
            literal(w["name"]),
            literal(w.get("machine") or "-"),
            literal(w["host"]),
            styled(worker_state(w)),
            str(w["slots"]),
            str(w["running"]),
            str(w["done"]),
            str(w["failed"]),
            seconds(now - w["last_sync"]) + " ago",
        )
    return table

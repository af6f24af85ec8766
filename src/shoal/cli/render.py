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

from rich.console import Console
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


def counts_text(counts: dict[str, int]) -> Text:
    out = Text()
    for state in STATE_ORDER:
        n = counts.get(state)
        if n:
            if out:
                out.append("  ")
            out.append(f"{n} {state}", style=STATE_STYLE.get(state, ""))
    return out


def run_table(runs: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("run", "name", "state", "done", "tasks", "counts", "age"):
        table.add_column(col)
    now = time.time()
    for r in runs:
        done = r["total"] - r["active"]
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
    end = view["finished"] or time.time()
    elapsed = max(1e-9, end - view["created"])
    done = view["total"] - view["active"]
    console.print(
        Text.assemble(
            (f"run {view['run']} ", "bold"),
            (view["name"], "bold"),
            "  ",
            styled(view["state"]),
            f"  {done}/{view['total']} done in {seconds(elapsed)}",
            f"  ({done / elapsed:.1f} tasks/s)" if done else "",
        )
    )
    counts = counts_text(view["counts"])
    if view.get("cached"):
        counts.append(
            f"  ({view['cached']} cached: unchanged since they last succeeded)", style="dim"
        )
    console.print(counts)
    if view.get("final") and view.get("result") is not None:
        console.print(
            Text.assemble(("result ", "bold"), (short(view["result"], 200).plain, "bold green"))
        )
    elif view.get("partial"):
        for name, value in view["partial"].items():
            console.print(Text.assemble((f"{name} so far ", "bold"), short(value, 200).plain))
    for w in view.get("warnings", []):
        console.print(Text(f"warning: {w}", style="yellow"), soft_wrap=True)


def task_table(tasks: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    for col in ("task", "state", "attempts", "exit", "duration", "worker", "result / cause"):
        table.add_column(col, overflow="fold")
    for t in tasks:
        note = short(t["result"]) if t["state"] == "succeeded" else short(t.get("cause"), 60)
        if t.get("cached"):
            note = Text("(cached) ") + note
        table.add_row(
            literal(t["name"]),
            styled(t["state"]),
            str(t["attempts"]),
            "" if t["exit_code"] is None else str(t["exit_code"]),
            seconds(t["duration"]),
            literal(t["worker"]),
            note,
        )
    return table


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


def worker_table(workers: list[dict[str, Any]]) -> Table:
    table = Table(box=None, header_style="bold")
    columns = ("worker", "machine", "host", "state", "slots", "running", "done", "failed")
    for col in (*columns, "last sync"):
        table.add_column(col)
    now = time.time()
    for w in workers:
        table.add_row(
            literal(w["name"]),
            literal(w.get("machine") or ""),
            literal(w["host"]),
            styled(w["state"]),
            str(w["slots"]),
            str(w["running"]),
            str(w["done"]),
            str(w["failed"]),
            seconds(now - w["last_sync"]) + " ago",
        )
    return table

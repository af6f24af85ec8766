"""``shoal gc``: remove the outputs, logs and bundles no run needs, and say what that freed.

With a boss running, the boss does it (``POST /v1/gc``): it holds the
datastore, wherever that is, and its database says what is still needed.
With none, the state folder's database and datastore are opened here. The
decision is :func:`shoal.datastore.gc.plan`'s.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

from shoal.cli.common import (
    BossOpt,
    DataOptionOpt,
    JsonOpt,
    StateOpt,
    TokenOpt,
    _datastore,
    _emit_json,
    _state,
    app,
)
from shoal.cli.data import DataOpt, size_text
from shoal.client.boss import BossClient
from shoal.client.data import BossData
from shoal.datastore import open_datastore
from shoal.datastore.gc import KINDS, Plan, collect
from shoal.exceptions import BadInput
from shoal.spec.fields import parse_duration

__all__ = ["gc", "parse_age"]

_ZERO = re.compile(r"^0+(\.0*)?\s*(ms|s|m|h|d)?$")


def parse_age(text: str) -> float:
    """Seconds from ``30d``, ``12h``, ``90m``, ``0``...; one line if it is not an age."""
    if _ZERO.match(text.strip().lower()):
        return 0.0
    try:
        return parse_duration(text)
    except ValueError as e:
        raise BadInput(f"--older-than: {e}; e.g. 30d, 12h or 0 (every run that ended)") from None


@app.command(
    epilog="Examples:\n"
    "  shoal gc --dry-run                 # what would go, nothing removed\n"
    "  shoal gc --older-than 7d"
)
def gc(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Remove the files of runs that ended longer ago than this (30d, 12h, 0).",
        ),
    ] = "30d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed; remove nothing.")
    ] = False,
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the outputs, logs and bundles of runs gone or ended long ago, never what a task needs."""
    age = parse_age(older_than)
    sd = _state(state)
    if boss or os.environ.get("SHOAL_BOSS") or sd.live_boss() is not None:
        if data is not None or data_option:
            raise BadInput(
                "a boss is running: it collects its own datastore; drop --data, or stop the boss"
            )
        access = BossData(BossClient.find(boss, token, sd))
        try:
            result = Plan.from_dict(access.gc(age, dry_run))
        finally:
            access.close()
    else:
        result = _collect_here(sd.root, data, data_option, age, dry_run)
    if as_json:
        _emit_json({**result.to_dict(), "dry_run": dry_run})
        return
    _report(result, dry_run)


def _collect_here(
    root: Path, data: str | None, data_options: list[str] | None, age: float, dry_run: bool
) -> Plan:
    """gc with no boss: the state folder's database, and its datastore (or ``--data``)."""
    from shoal.scheduler import Scheduler
    from shoal.statedir import StateDir
    from shoal.store import Store
    from shoal.store.gc import gc_facts

    sd = StateDir(root)
    if not sd.has_database():
        raise BadInput(
            f"no database in {root}: gc needs the runs' records to know what is still needed "
            "(pass --state FOLDER, or start the boss that has them)"
        )
    store = Store(sd.database())
    try:
        location, options = _datastore(sd, data, data_options)
        datastore = open_datastore(location, options)
        scheduler = Scheduler(store)
        return collect(
            datastore,
            lambda: gc_facts(store),
            scheduler.outputs_removed,
            scheduler.clock(),
            age,
            dry_run=dry_run,
        )
    finally:
        store.close()


def _report(result: Plan, dry_run: bool) -> None:
    if dry_run:
        for r in result.removals:
            print(f"would remove {r.kind:<8} {r.path}  ({_files(r.files)}, {size_text(r.bytes)})")
    totals = result.totals()
    files = sum(t["files"] for t in totals.values())
    size = sum(t["bytes"] for t in totals.values())
    verb = "would free" if dry_run else "freed"
    parts = [
        f"{kind} {_files(totals[kind]['files'])} {size_text(totals[kind]['bytes'])}"
        for kind in KINDS
        if totals[kind]["files"]
    ]
    detail = f": {', '.join(parts)}" if parts else ""
    print(f"{verb} {_files(files)}, {size_text(size)}{detail}")
    kept = result.kept.get("outputs", 0)
    if kept:
        print(
            f"kept the outputs of {kept} task{'s' if kept != 1 else ''} of ended runs: "
            "a task not finished, or a run kept, still reads them"
        )


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"

"""``shoal data add|ls|get|rm``: the datastore, through the running boss or straight on it.

Without a boss (``--data FOLDER|URL``, or a state folder whose boss is not
running) the datastore is opened here. Paths are datastore paths: relative,
``/``-separated, no ``..``; a task's ``inputs:`` names them as they are
listed. The folders shoal writes itself (``runs/``, ``logs/``,
``bundles/``, ``.staging``) are read-only here: ``shoal gc`` cleans them.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from shoal.cli import render
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
from shoal.client import BossClient, Client
from shoal.client.data import BossData, DataAccess, DirectData, nearby
from shoal.client.data import Progress as Moved
from shoal.datastore import open_datastore
from shoal.datastore.base import FileInfo, check_path, shown
from shoal.datastore.gc import shoal_folder
from shoal.datastore.layout import output_prefix
from shoal.datastore.location import is_url
from shoal.exceptions import BadInput, BossUnreachable, NotFound

__all__ = ["add", "copy_outputs", "data_app", "get", "ls", "rm", "size_text"]

data_app = typer.Typer(
    help="The datastore: add, list, get and remove files (through the boss, or --data).",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="FOLDER|URL",
        help="Work on this datastore directly, with no boss (default: the running boss's).",
    ),
]
# Files at least this large get a progress bar (on a terminal).
PROGRESS_FROM = 8 * 1024 * 1024


def open_access(
    data: str | None,
    data_options: list[str] | None,
    boss: str | None,
    token: str | None,
    state: Path | None,
) -> DataAccess:
    """The datastore to work on: ``--data``, else the running boss's, else the state folder's.

    With no boss running, the state folder's datastore is the one its last boss
    used (a folder or a URL, with its options), as ``shoal logs`` reads it.
    """
    sd = _state(state)
    if data is not None:
        location, options = _datastore(sd, data, data_options)
        return DirectData(open_datastore(location, options), location)
    if data_options:
        raise BadInput("--data-option needs --data URL: the options go with a URL")
    if not (boss or os.environ.get("SHOAL_BOSS")) and sd.live_boss() is None:
        location, options = sd.datastore()
        if is_url(location) or Path(location).is_dir():
            return DirectData(open_datastore(location, options), location)
    try:
        return BossData(BossClient.find(boss, token, sd))
    except BossUnreachable as e:
        raise BossUnreachable(
            f"{e}; or give --data FOLDER|URL to work on a datastore directly"
        ) from None


def _existing(access: DataAccess, path: str) -> list[FileInfo]:
    """The files at ``path`` (a file, or a folder's); NotFound, saying what is near, if none."""
    entries = access.entries(path)
    if not entries:
        raise NotFound(
            f"no file or folder '{shown(path)}' in the datastore: {nearby(access, path)}"
        )
    return entries


def size_text(n: int) -> str:
    """Bytes for people: ``812 B``, ``1.5 KiB``, ``3.0 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _datastore_path(path: str, what: str) -> str:
    """A datastore path as given on the command line, checked; trailing '/' dropped."""
    clean = path.strip().rstrip("/")
    if not clean:
        raise BadInput(f"{what}: give a datastore path, like 'inputs/data.csv'")
    check_path(clean)
    return clean


def _writable(path: str, verb: str) -> None:
    folder = shoal_folder(path)
    if folder is not None:
        raise BadInput(
            f"cannot {verb} '{shown(path)}': '{folder}' is shoal's own folder for its runs "
            "('shoal gc' cleans it); use another path"
        )


@contextmanager
def _progress(total: int, label: str) -> Iterator[Moved]:
    """A byte counter; shown as a bar on a terminal when the transfer is large."""
    if total < PROGRESS_FROM or not sys.stderr.isatty():
        yield lambda n: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=render.console(stderr=True),
        transient=True,
    )
    with bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _local_files(local: Path) -> list[tuple[Path, str]]:
    """The files to add from ``local`` (a file, or a folder walked), with their relative names."""
    if local.is_file():
        return [(local, "")]
    found = []
    for root, dirs, files in os.walk(local):
        dirs.sort()
        for name in sorted(files):
            source = Path(root) / name
            if source.is_file():
                found.append((source, source.relative_to(local).as_posix()))
    return found


@data_app.command(
    epilog="Examples:\n"
    "  shoal data add refs/genome.fa       # tasks read it as inputs: [genome.fa]\n"
    "  shoal data add images/ raw/"
)
def add(
    local: Annotated[Path, typer.Argument(help="A local file or folder.")],
    path: Annotated[
        str | None,
        typer.Argument(help="Where it goes in the datastore (default: its name; 'DIR/': inside)."),
    ] = None,
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Add a file or a folder to the datastore (a task names it in its inputs:)."""
    if not local.exists():
        raise BadInput(f"no file or folder {local} here: give a local path to add")
    name = local.resolve().name
    if path is None:
        path = name
    elif path.endswith("/"):
        path = path + name
    target = _datastore_path(path, "shoal data add")
    _writable(target, "add")
    files = _local_files(local)
    if not files:
        raise BadInput(f"the folder {local} holds no file: nothing to add")
    paths = [(source, f"{target}/{rel}" if rel else target) for source, rel in files]
    for _, dest in paths:
        check_path(dest)
    total = sum(source.stat().st_size for source, _ in paths)
    access = open_access(data, data_option, boss, token, state)
    try:
        with _progress(total, f"adding {local.name}") as moved:
            for source, dest in paths:
                access.upload(source, dest, moved)
    finally:
        access.close()
    what = "1 file" if len(paths) == 1 else f"{len(paths)} files"
    shown_as = target if local.is_file() else target + "/"
    print(f"added {what} ({size_text(total)}) as '{shown_as}'")


@data_app.command(epilog="Examples:\n  shoal data ls\n  shoal data ls runs/")
def ls(
    prefix: Annotated[str, typer.Argument(help="A folder (or a file) of the datastore.")] = "",
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the files under a folder: size, time written, sha256 (short), path."""
    clean = prefix.strip().rstrip("/")
    if clean:
        check_path(clean)
    access = open_access(data, data_option, boss, token, state)
    try:
        entries = access.entries(clean)
        if not entries and clean:
            raise NotFound(f"nothing at '{shown(clean)}' in the datastore: {nearby(access, clean)}")
    finally:
        access.close()
    if as_json:
        _emit_json([e.to_dict() for e in entries])
        return
    for line in listing_lines(entries):
        print(line)


def listing_lines(entries: list[FileInfo]) -> list[str]:
    """One aligned line per file: size, time, sha256's first 12 digits, path ('-': unknown)."""
    rows = [
        (
            size_text(e.size),
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.modified))
            if e.modified is not None
            else "-",
            e.sha256[:12] if e.sha256 else "-",
            e.path,
        )
        for e in entries
    ]
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(3)]
    return [
        f"{size:>{widths[0]}}  {when:<{widths[1]}}  {digest:<{widths[2]}}  {path}"
        for size, when, digest, path in rows
    ]


@data_app.command(
    epilog="Examples:\n"
    "  shoal data get raw/ here/\n"
    "  shoal data get genome.fa --data s3://bucket/shoal"
)
def get(
    path: Annotated[str, typer.Argument(help="A file or folder of the datastore.")],
    local: Annotated[
        Path | None, typer.Argument(help="Where to put it (default: its name, here).")
    ] = None,
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Copy a file or a folder out of the datastore."""
    source = _datastore_path(path, "shoal data get")
    access = open_access(data, data_option, boss, token, state)
    try:
        entries = _existing(access, source)
        name = source.rsplit("/", 1)[-1]
        single = len(entries) == 1 and entries[0].path == source
        dest = local if local is not None else Path(name)
        if single and dest.is_dir():
            dest = dest / name
        total = sum(e.size for e in entries)
        with _progress(total, f"getting {name}") as moved:
            for e in entries:
                where = dest if single else dest / e.path[len(source) + 1 :]
                access.download(e.path, where, moved)
    finally:
        access.close()
    what = "1 file" if len(entries) == 1 else f"{len(entries)} files"
    print(f"got {what} ({size_text(total)}) into {dest}")


@data_app.command(epilog="Examples:\n  shoal data rm raw/ -y\n  shoal data rm genome.fa")
def rm(
    path: Annotated[str, typer.Argument(help="A file or folder of the datastore.")],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remove a folder without asking.")
    ] = False,
    data: DataOpt = None,
    data_option: DataOptionOpt = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateOpt = None,
) -> None:
    """Remove a file, or a folder and everything in it (asked first)."""
    target = _datastore_path(path, "shoal data rm")
    _writable(target, "remove")
    access = open_access(data, data_option, boss, token, state)
    try:
        entries = _existing(access, target)
        folder = not (len(entries) == 1 and entries[0].path == target)
        if folder and not yes:
            what = f"the folder '{shown(target)}/' and its {len(entries)} files"
            if not sys.stdin.isatty():
                raise BadInput(f"not removing {what} without a question: pass --yes")
            total = size_text(sum(e.size for e in entries))
            if not typer.confirm(f"remove {what} ({total})?", default=False):
                print("nothing removed")
                raise typer.Exit(1)
        files, size = access.remove(target)
    finally:
        access.close()
    shown_as = f"'{target}/'" if folder else f"'{target}'"
    print(f"removed {shown_as} ({files} file{'s' if files != 1 else ''}, {size_text(size)})")


def copy_outputs(client: Client, run_ref: str | None, folder: Path, state: Path | None) -> None:
    """``shoal results --outputs RUN DIR``: every output of the run, under DIR/<task>/, streamed."""
    run_id = int(client.run(run_ref)["run"])
    tasks = [t for t in client.tasks(run_id) if t.get("outputs")]
    if isinstance(client, BossClient):
        access: DataAccess = BossData(client)
    else:
        location, options = _state(state).datastore()
        access = DirectData(open_datastore(location, options), location)
    copied = total = 0
    try:
        for t in tasks:
            holder = int(t.get("source_run") or run_id)
            for name in t["outputs"]:
                where = folder / t["name"] / name
                total += access.download(output_prefix(holder, t["name"]) + name, where)
                copied += 1
    finally:
        access.close()
    if not copied:
        print(f"run {run_id} has no outputs yet: nothing copied")
        return
    print(
        f"copied {copied} output{'s' if copied != 1 else ''} of {len(tasks)} "
        f"task{'s' if len(tasks) != 1 else ''} ({size_text(total)}) into {folder}/"
    )

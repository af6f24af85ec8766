"""The ``shoal`` command line.

Every command ends in one clear line on error and an exit code: 0 success,
1 a task failed, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from shoal import __version__
from shoal.agent.client import read_token_file, token_from_environment, token_warning
from shoal.cli import render
from shoal.client import BossClient, OfflineClient
from shoal.exceptions import BadInput, NotFound, ShoalError
from shoal.statedir import StateDir

__all__ = ["app", "main"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="shoal runs a batch of shell tasks with dependencies across many machines.",
)
console = render.console()

BossOpt = Annotated[
    str | None,
    typer.Option("--boss", help="The boss's URL (default: $SHOAL_BOSS or the state folder)."),
]
HostsOpt = Annotated[
    Path | None,
    typer.Option("--hosts", help="Inventory of ssh hosts (hosts.yaml): one worker on each."),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database: a SQLite file or postgresql://USER@HOST/NAME (default: STATE/shoal.db).",
    ),
]


def _warn_token(value: str | None) -> str | None:
    """A token on the command line works, with a warning: ``ps`` shows it to everyone."""
    if value:
        sys.stderr.write(
            "shoal: "
            + token_warning("--token", "set SHOAL_TOKEN, or SHOAL_TOKEN_FILE to a file holding it")
            + "\n"
        )
    return value


def _warn_token_file_safer(value: str | None) -> str | None:
    if value:
        sys.stderr.write(
            "shoal: " + token_warning("--token", "set SHOAL_TOKEN or pass --token-file FILE") + "\n"
        )
    return value


TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        callback=_warn_token,
        help="The boss's token (default: $SHOAL_TOKEN, $SHOAL_TOKEN_FILE or the state folder).",
    ),
]
TokenFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--token-file", help="A file holding the boss's token (default: $SHOAL_TOKEN_FILE)."
    ),
]
StateDirOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="The state folder to find the boss in (default: .shoal)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LeaseOpt = Annotated[
    float,
    typer.Option("--lease", help="Seconds an attempt lives without a sync from its worker."),
]
SpeculateMinOpt = Annotated[
    float,
    typer.Option(
        "--speculate-min", help="Seconds a straggler runs before it may get a backup attempt."
    ),
]
FreshOpt = Annotated[
    bool,
    typer.Option("--fresh", help="Run every task, even those that succeeded before unchanged."),
]
RunArg = Annotated[str | None, typer.Argument(help="Run id or name (default: the latest run).")]
LogCapOpt = Annotated[
    str | None,
    typer.Option(
        "--log-cap",
        help="Keep at most this much of each attempt's log: its head and its tail, "
        "with a line saying what was cut (default 8M; K, M, G).",
    ),
]


def _log_cap(text: str | None) -> int | None:
    if text is None:
        return None
    from shoal.agent.logcap import log_cap

    try:
        return log_cap(text)
    except ValueError as e:
        raise BadInput(f"--log-cap: {e}") from None


_SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def parse_size(text: str, option: str) -> int:
    """Bytes from ``123``, ``64K``, ``64M`` or ``1G`` (binary units); one line if it is not."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    number, unit = (value[:-1], value[-1]) if value[-1:] in "KMG" else (value, "")
    try:
        size = float(number) * _SIZE_UNITS[unit]
    except ValueError:
        size = -1
    if not 0 < size < 2**50:
        raise BadInput(f"{option} '{text}' is not a size: write it like 64M, 512K or 1G")
    return int(size)


def _state(path: Path | None) -> StateDir:
    return StateDir(path or Path(os.environ.get("SHOAL_STATE", ".shoal")))


def _inventory(path: Path | None) -> Any:
    if path is None:
        return None
    from shoal.spec import inventory

    return inventory.load(path)


def _token(token_file: Path | None) -> str | None:
    """The token in ``--token-file``, ``$SHOAL_TOKEN`` or ``$SHOAL_TOKEN_FILE``, if any."""
    try:
        if token_file is not None:
            return read_token_file(str(token_file))
        return token_from_environment()
    except ValueError as e:
        raise BadInput(str(e)) from None


def _client(boss: str | None, token: str | None, state: Path | None) -> BossClient | OfflineClient:
    """The boss to ask; without one, the state folder's database, read directly."""
    sd = _state(state)
    if not (boss or os.environ.get("SHOAL_BOSS")) and sd.live_boss() is None and sd.has_database():
        return OfflineClient(sd)
    return BossClient.find(boss, token, sd)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=None) + "\n")


def _version(value: bool) -> None:
    if value:
        console.print(f"shoal {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


@app.command()
def run(
    file: Annotated[str, typer.Argument(help="The task file (YAML or JSON).")],
    jobs: Annotated[
        int, typer.Option("-j", "--jobs", help="Local workers (default: the number of cores).")
    ] = 0,
    slots: Annotated[int, typer.Option("--slots", help="Slots per local worker.")] = 1,
    state: Annotated[
        Path, typer.Option("--state", help="State folder: database, datastore, logs.")
    ] = Path(".shoal"),
    db: DbOpt = None,
    hosts: HostsOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress and no summary.")
    ] = False,
    fresh: FreshOpt = False,
    lease: LeaseOpt = 30.0,
    speculate_min: SpeculateMinOpt = 30.0,
    log_cap: LogCapOpt = None,
) -> None:
    """Run a task file on this machine, start to end: boss, workers, progress, summary."""
    from shoal.cli.progress import run_command

    cap = _log_cap(log_cap)
    inventory = _inventory(hosts)
    code = run_command(
        file,
        jobs=jobs if jobs or inventory is not None else os.cpu_count() or 1,
        hosts=inventory,
        slots=slots,
        state=StateDir(state),
        db=db,
        as_json=as_json,
        quiet=quiet,
        lease=lease,
        fresh=fresh,
        speculate_min=speculate_min,
        log_cap=cap,
    )
    raise typer.Exit(code)


@app.command()
def flow(
    expression: Annotated[
        str, typer.Argument(help='The flow, e.g. "(a | b | c); d; a + b + c + d".')
    ],
    defs: Annotated[
        Path, typer.Option("--defs", help="Python file whose functions return each task's command.")
    ],
    jobs: Annotated[
        int, typer.Option("-j", "--jobs", help="Local workers (default: the number of cores).")
    ] = 0,
    state: Annotated[
        Path, typer.Option("--state", help="State folder: database, datastore, logs.")
    ] = Path(".shoal"),
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
        jobs=jobs or os.cpu_count() or 1,
        slots=1,
        state=StateDir(state),
        as_json=as_json,
        quiet=quiet,
        fresh=fresh,
        print_result=True,
        log_cap=_log_cap(log_cap),
    )
    raise typer.Exit(code)


@app.command()
def boss(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to serve on.")
    ] = "127.0.0.1:8765",
    db: DbOpt = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Datastore folder (default: STATE/data); bosses of one database share it.",
        ),
    ] = None,
    state: Annotated[Path, typer.Option("--state", help="State folder.")] = Path(".shoal"),
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            callback=_warn_token_file_safer,
            help="Token workers and commands must give (default: $SHOAL_TOKEN, else STATE/token).",
        ),
    ] = None,
    token_file: TokenFileOpt = None,
    lease: LeaseOpt = 30.0,
    speculate_min: SpeculateMinOpt = 30.0,
    speculate: Annotated[
        bool, typer.Option("--speculate/--no-speculate", help="Give stragglers backup attempts.")
    ] = True,
    max_losses: Annotated[
        int, typer.Option("--max-losses", help="Lost attempts after which a task fails.")
    ] = 3,
    max_body: Annotated[
        str,
        typer.Option(
            "--max-body",
            help="Largest JSON request the boss reads (a submitted run), e.g. 64M or 1G.",
        ),
    ] = "32M",
) -> None:
    """Serve the boss: the API workers and commands talk to."""
    from shoal.boss.api import Limits
    from shoal.boss.server import Boss, parse_listen

    limits = Limits(max_body=parse_size(max_body, "--max-body"))

    sd = StateDir(state)
    other = sd.live_boss()
    if other is not None:
        raise BadInput(
            f"a boss (pid {other.get('pid')}) already serves {sd.root} at {other.get('url')}"
        )
    host, port = parse_listen(listen)
    sd.create()
    given = token or _token(token_file)
    token = given or sd.token()
    server = Boss(
        db=sd.database(db),
        data=data or sd.data,
        token=token,
        host=host,
        port=port,
        lease_seconds=lease,
        speculate=speculate,
        speculate_min=speculate_min,
        max_losses=max_losses,
        limits=limits,
    )
    sd.write_boss(server.url, token)
    import logging

    from shoal.logs import configure

    configure()
    start = (
        f"SHOAL_TOKEN=<the token given to this boss> shoal worker --boss {server.url}"
        if given
        else f"shoal worker --boss {server.url} --token-file {sd.token_file}"
    )
    logging.getLogger("shoal.boss").info(
        f"serving {server.url}; start workers with: {start}",
        extra={
            "event": "boss_started",
            "url": server.url,
            "state": str(sd.root),
            "pid": os.getpid(),
        },
    )
    try:
        server.serve()
    finally:
        sd.clear_boss()
        server.close()


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(
    ctx: typer.Context,
    boss_url: Annotated[str | None, typer.Option("--boss", help="The boss's URL.")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            callback=_warn_token_file_safer,
            help="The boss's token (default: $SHOAL_TOKEN, $SHOAL_TOKEN_FILE or the state folder).",
        ),
    ] = None,
    token_file: TokenFileOpt = None,
    slots: Annotated[int, typer.Option("--slots", help="Attempts at once (default: cores).")] = 0,
    idle_exit: Annotated[
        float | None, typer.Option("--idle-exit", help="Exit after this many idle seconds.")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Worker name (default: HOST-PID).")
    ] = None,
    log_cap: LogCapOpt = None,
    state: StateDirOpt = None,
) -> None:
    """Run a worker that pulls tasks from a boss until stopped."""
    from shoal.agent.worker import main as agent_main

    sd = _state(state)
    info = sd.live_boss() if not (boss_url or os.environ.get("SHOAL_BOSS")) else None
    argv = ["--boss=" + (boss_url or os.environ.get("SHOAL_BOSS") or (info or {}).get("url") or "")]
    tok = token or _token(token_file) or (info or {}).get("token")
    argv.append(f"--slots={slots or os.cpu_count() or 1}")
    if idle_exit is not None:
        argv.append(f"--idle-exit={idle_exit}")
    if name:
        argv.append("--name=" + name)
    if log_cap is not None:
        argv.append("--log-cap=" + log_cap)
    # The token is handed over in this process: never on a command line.
    raise typer.Exit(agent_main(argv + list(ctx.args), token=tok))


@app.command()
def submit(
    file: Annotated[str, typer.Argument(help="The task file.")],
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
) -> None:
    """Submit a task file to a running boss; prints the run id."""
    from shoal import spec as specs

    spec = specs.load(file)
    with BossClient.find(boss, token, _state(state)) as client:
        print(client.submit(spec))


@app.command()
def status(
    run_ref: RunArg = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Redraw until the run ends.")
    ] = False,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
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


@app.command()
def tasks(
    run_ref: RunArg = None,
    state_filter: Annotated[
        list[str] | None, typer.Option("--state", help="Only tasks in this state (repeatable).")
    ] = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a run's tasks with state, attempts, exit code, result, worker, duration."""
    client = _client(boss, token, state)
    rows = client.tasks(run_ref, state_filter)
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
    state: StateDirOpt = None,
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
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the results tasks wrote to $SHOAL_RESULT (or their last stdout line)."""
    client = _client(boss, token, state)
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
    state: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the workers the boss knows."""
    client = _client(boss, token, state)
    rows = client.workers()
    _emit_json(rows) if as_json else console.print(render.worker_table(rows))


InventoryOpt = Annotated[Path, typer.Option("--hosts", help="Inventory of ssh hosts (hosts.yaml).")]
hosts_app = typer.Typer(help="The ssh hosts of an inventory.", no_args_is_help=True)
app.add_typer(hosts_app, name="hosts")


@hosts_app.command("check")
def hosts_check(
    hosts: InventoryOpt,
    as_json: JsonOpt = False,
) -> None:
    """Try every host: reachable, key accepted, Python version, free disk, connect time."""
    from shoal.launch.ssh import check_hosts

    inv = _inventory(hosts)
    results = check_hosts(list(inv.hosts))
    if as_json:
        _emit_json([vars(r) for r in results])
    else:
        console.print(render.host_check_table(results))
    raise typer.Exit(0 if all(r.reachable and r.error is None for r in results) else 1)


@app.command()
def inject(
    bundle: Annotated[Path, typer.Argument(help="A folder or archive (.tar, .tar.gz, .zip…).")],
    hosts: InventoryOpt,
    script: Annotated[
        str, typer.Option("--script", help="The launch script in the bundle.")
    ] = "shoal-launch",
) -> None:
    """Unpack a bundle on every host and start its launch script there, detached.

    The script gets SHOAL_HOST_INDEX, SHOAL_HOST_COUNT and SHOAL_HOSTS (every
    host's address) and writes to SCRIPT.log beside it.
    """
    from shoal.launch.ssh import inject as inject_bundle

    if not bundle.exists():
        raise BadInput(f"no bundle at {bundle}")
    inv = _inventory(hosts)
    results = inject_bundle(list(inv.hosts), bundle, script)
    for r in results:
        if r.error is None:
            console.print(
                f"{r.host}: started {script} in {r.folder}", highlight=False, markup=False
            )
        else:
            console.print(Text.assemble(f"{r.host}: ", ("failed", "red"), f": {r.error}"))
    raise typer.Exit(0 if all(r.error is None for r in results) else 1)


@app.command()
def up(
    hosts: InventoryOpt,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
    boss_url: Annotated[
        str | None,
        typer.Option(
            "--boss-url",
            help="The URL the hosts reach the boss at directly (default: a reverse ssh tunnel).",
        ),
    ] = None,
) -> None:
    """Start a worker on every host of the inventory for a running boss; they stay up.

    A keeper process holds the ssh connections, starts a dropped host's worker
    again, and stops them all at 'shoal down'.
    """
    from shoal.launch.up import Brought
    from shoal.launch.up import up as bring_up

    _inventory(hosts)  # a mistake in it is refused first, in one line
    sd = _state(state)
    client = BossClient.find(boss, token, sd)
    with client:
        client.workers()  # the boss answers, and takes this token
    started = 0

    def tell(b: Brought) -> None:
        nonlocal started
        if b.error is None:
            started += 1
            copied = " (agent copied)" if b.copied else ""
            console.print(f"{b.host}: worker started{copied}", highlight=False, markup=False)
        else:
            console.print(Text.assemble(f"{b.host}: ", ("failed", "red"), f": {b.error}"))

    brought = bring_up(
        sd,
        hosts,
        boss_url=client.url,
        token=client.token,
        direct_url=boss_url,
        on_host=tell,
    )
    if not started:
        raise typer.Exit(1)
    console.print(
        f"workers up on {started} of {len(brought)} hosts for {client.url}; "
        "'shoal workers' lists them, 'shoal down' stops them",
        highlight=False,
        markup=False,
    )


@app.command()
def down(
    state: StateDirOpt = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Let them finish what runs first (however long).")
    ] = False,
) -> None:
    """Stop the workers 'shoal up' started; what they ran runs again elsewhere."""
    from shoal.launch.up import down as take_down

    if drain:
        console.print("waiting for the workers to finish what runs…", highlight=False)
    hosts = take_down(_state(state), drain=drain)
    console.print(f"workers stopped on {', '.join(hosts)}", highlight=False, markup=False)


@app.command()
def pull(
    host: Annotated[str, typer.Argument(help="The host's index (from 0) or name.")],
    remote: Annotated[
        str, typer.Argument(help="The file there (relative: in the injected bundle's folder).")
    ],
    local: Annotated[
        Path | None, typer.Argument(help="Where to put it (default: its name).")
    ] = None,
    hosts: InventoryOpt = Path("hosts.yaml"),
) -> None:
    """Copy a file back from a host."""
    from shoal.launch.ssh import SshFailed
    from shoal.launch.ssh import pull as pull_file

    target = _inventory(hosts).find(host)
    dest = local or Path(Path(remote).name)
    if dest.is_dir():
        dest = dest / Path(remote).name
    try:
        pull_file(target, remote, dest)
    except SshFailed as e:
        raise ShoalError(f"cannot copy {remote} from {e.host}: {e.line}") from None
    console.print(f"{dest}", highlight=False, markup=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    host: Annotated[str, typer.Argument(help="The host's index (from 0) or name.")] = "0",
    hosts: InventoryOpt = Path("hosts.yaml"),
    attach: Annotated[
        bool,
        typer.Option("--attach", help="Join the injected launch script's terminal (tmux/screen)."),
    ] = False,
) -> None:
    """Open a shell on a host, in the injected bundle's folder (or run the command after --)."""
    from shoal.launch.ssh import shell_argv

    if attach and ctx.args:
        raise BadInput("--attach joins the injected session: give no command after --")
    argv = shell_argv(_inventory(hosts).find(host), list(ctx.args), attach=attach)
    sys.stdout.flush()
    os.execvp(argv[0], argv)


@app.command()
def bosses(
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the bosses serving the database, and which one does the housekeeping."""
    client = _client(boss, token, state)
    rows = client.bosses()
    _emit_json(rows) if as_json else console.print(render.boss_table(rows))


@app.command()
def cancel(
    run_ref: Annotated[str, typer.Argument(help="Run id or name.")],
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
) -> None:
    """Cancel a run: its unfinished tasks stop and will not start."""
    client = _client(boss, token, state)
    run_id = client.run(run_ref)["run"]
    n = client.cancel(run_id)
    console.print(f"run {run_id}: {n} task(s) cancelled")


@app.command()
def retry(
    run_ref: Annotated[str, typer.Argument(help="Run id or name.")],
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
) -> None:
    """Run a run's failed, upstream-failed and cancelled tasks again."""
    client = _client(boss, token, state)
    run_id = client.run(run_ref)["run"]
    n = client.retry(run_id)
    console.print(f"run {run_id}: {n} task(s) will run again")


@app.command()
def events(
    run_ref: RunArg = None,
    boss: BossOpt = None,
    token: TokenOpt = None,
    state: StateDirOpt = None,
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


def main() -> None:
    """Entry point of the ``shoal`` command."""
    code = 0
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except ShoalError as e:
        # One line, never wrapped: scripts and people both read it.
        sys.stderr.write(f"shoal: {e}\n")
        code = e.exit_code
    except typer.Exit as e:
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # `shoal tasks | head`: the reader left; that is not an error. (SIGPIPE
        # keeps Python's default, so a worker's broken socket never kills it.)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except Exception as e:
        # Usage errors from the option parser (Typer's own copy of click).
        show = getattr(e, "show", None)
        if callable(show) and isinstance(getattr(e, "exit_code", None), int):
            show()
            code = 2
        elif type(e).__name__ == "Abort":
            code = 130
        else:
            raise
    _exit(code)


def _exit(code: int) -> None:
    """Exit without tearing the interpreter down.

    Every file, database and process shoal opened is closed by now; what is
    left is unloading SQLAlchemy, Starlette and friends module by module,
    which costs a third of a second that nobody waits for gladly.
    """
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(code)

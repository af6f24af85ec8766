"""Shared fixtures: state folders, a real boss in a thread, the real command."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shoal(
    *args: str, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `shoal` command as a user would."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = SRC + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.pop("SHOAL_BOSS", None)
    full_env.pop("SHOAL_TOKEN", None)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "shoal", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def shoal_json(*args: str, cwd: Path, env: dict[str, str] | None = None) -> Any:
    proc = shoal(*args, "--json", cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


class RunningBoss:
    """A real boss (SQLite file, local datastore) serving from a thread."""

    def __init__(self, root: Path, lease_seconds: float = 30.0) -> None:
        from shoal.boss.server import Boss

        self.root = root
        self.token = "test-token"
        self.boss = Boss(
            db=root / "shoal.db", data=root / "data", token=self.token, lease_seconds=lease_seconds
        )
        self.boss.start()
        self.url = self.boss.url
        self.scheduler = self.boss.scheduler

    def stop(self) -> None:
        self.boss.stop()


@pytest.fixture
def boss(tmp_path: Path) -> Iterator[RunningBoss]:
    b = RunningBoss(tmp_path / "boss")
    yield b
    b.stop()


class AgentThread:
    """A real worker agent in a thread of the test process."""

    def __init__(
        self, url: str, token: str, workdir: Path, slots: int = 1, name: str = "w", **kw: Any
    ) -> None:
        from shoal.agent.client import AgentClient
        from shoal.agent.worker import Agent

        self.agent = Agent(
            AgentClient(url, token), slots=slots, name=name, workdir=str(workdir), quiet=True, **kw
        )
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.agent.run()

    def stop(self) -> None:
        self.agent.request_stop()
        self.agent.request_stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the agent did not stop"


class Procs:
    """Background processes of a test, each stopped by its PID; their stderr goes to files."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.procs: list[subprocess.Popen[str]] = []
        self.extra: list[int] = []  # pids the test started indirectly and must stop too

    def start(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        full = dict(os.environ, PYTHONPATH=SRC, **(env or {}))
        self.logdir.mkdir(parents=True, exist_ok=True)
        with (self.logdir / f"{len(self.procs)}-{args[0]}.log").open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "shoal", *args],
                cwd=cwd,
                env=full,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[str]) -> str:
        i = self.procs.index(proc)
        return next(self.logdir.glob(f"{i}-*.log")).read_text()

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for pid in self.extra:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    ps = Procs(tmp_path / "proc-logs")
    yield ps
    ps.stop_all()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid``, read from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            for thread in os.listdir(f"/proc/{parent}/task"):
                for child in Path(f"/proc/{parent}/task/{thread}/children").read_text().split():
                    if int(child) not in found:
                        found.add(int(child))
                        todo.append(int(child))
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def boss_info(state: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state / "boss.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def start_boss(procs: Procs, cwd: Path, *extra: str, listen: str = "127.0.0.1:0") -> dict[str, Any]:
    """A `shoal boss` in ``cwd``'s state folder; what its boss.json says once it serves."""
    procs.start("boss", "--listen", listen, *extra, cwd=cwd)

    def fresh() -> dict[str, Any] | None:
        info = boss_info(cwd / ".shoal")
        return info if info is not None and alive(int(info["pid"])) else None

    return wait_for(fresh, what="the boss to start")  # type: ignore[no-any-return]


def start_worker(
    procs: Procs, cwd: Path, info: dict[str, Any], name: str | None = None, slots: int = 1
) -> subprocess.Popen[str]:
    """A `shoal worker` for the boss ``info`` describes."""
    named = ["--name", name] if name else []
    return procs.start(
        "worker",
        "--boss",
        info["url"],
        "--slots",
        str(slots),
        *named,
        cwd=cwd,
        env={"SHOAL_TOKEN": info["token"]},
    )


def sleeps_under(pid: int) -> list[int]:
    """The ``sleep`` processes below ``pid``: a test task's stand-in for work."""
    return [
        p
        for p in descendants(pid)
        if "sleep" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
    ]


# -- databases -------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
_databases = iter(range(1, 1_000_000))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server: $SHOAL_TEST_POSTGRES, or a throwaway cluster made here.

    Without PostgreSQL installed the tests that need it are skipped, except
    under CI (CI=true), where that is a failure.
    """
    given = os.environ.get("SHOAL_TEST_POSTGRES")
    if given:
        yield given
        return
    import tempfile

    folder = tempfile.mkdtemp(prefix="shoal-pg-", dir="/tmp")
    script = str(ROOT / "scripts" / "throwaway-postgres")
    proc = subprocess.run([script, "start", folder], capture_output=True, text=True)
    if proc.returncode != 0:
        subprocess.run([script, "stop", folder], capture_output=True)
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL for the tests: {proc.stderr.strip()}")
        pytest.skip(f"no PostgreSQL: {proc.stderr.strip()}")
    try:
        yield proc.stdout.strip()
    finally:
        subprocess.run([script, "stop", folder], capture_output=True)


@contextlib.contextmanager
def fresh_postgres(server: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards."""
    import psycopg

    name = f"shoal_test_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base, _, _ = server.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database, on each database shoal supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shoal.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    with fresh_postgres(server) as url:
        yield url


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """An empty PostgreSQL database."""
    with fresh_postgres(postgres_server) as url:
        yield url


def read_until(fd: int, marker: bytes, seen: bytearray, timeout: float = 60) -> None:
    """Read a pty's controlling end into ``seen`` until ``marker`` shows (or the terminal closes)."""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} in {bytes(seen)!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:  # the terminal closed: the process ended
                break

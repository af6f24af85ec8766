"""What a new user meets in the boss, the workers and the help (issue 17 items 10-12, 14, 15).

One help per command, ``-h`` as well as ``--help``, values named as the text
names them and examples at the end; a boss started in a terminal says where
its dashboard and token are in words; a dashboard tab left open does not hold
a stopping boss; a bundle that no worker can set up fails the run, saying why
once; ``-j 0`` alone is refused.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import SRC, Procs, read_until, shoal, start_boss, write


# The commands whose help is this part's (status, logs, events, tasks, results,
# run, workers and bosses are the watching commands').
def _every_command() -> list[str]:
    """Every command and subcommand the app has, as the words that call it."""
    import typer.main

    from shoal.cli import load_commands

    found: list[str] = []

    def walk(command: Any, words: list[str]) -> None:
        subcommands = getattr(command, "commands", None)  # a group (Typer's own click)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*words, name])
        else:
            found.append(" ".join(words))

    walk(typer.main.get_command(load_commands()), [])
    return sorted(found)


COMMANDS = _every_command()
# How Typer names a value it knows only by its type: <str>, <list[str]>, {file}.
PLACEHOLDER = re.compile(r"<[a-z][\w\[\], |]*>|\{[a-z_]+\}")


def _help(words: str, flag: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return shoal(*words.split(), flag, cwd=tmp_path, env={"COLUMNS": "80"})


def test_worker_has_one_help_listing_every_option(tmp_path: Path) -> None:
    short = _help("worker", "-h", tmp_path)
    long = _help("worker", "--help", tmp_path)
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout
    for option in ("--label KEY=VALUE", "--drain-timeout SECONDS", "--slots N", "--ca FILE"):
        assert option in short.stdout


def test_every_command_takes_h_names_its_values_and_ends_with_examples(tmp_path: Path) -> None:
    for words in COMMANDS:
        got = _help(words, "-h", tmp_path)
        assert got.returncode == 0, f"shoal {words} -h: {got.stderr}"
        text = got.stdout
        assert not PLACEHOLDER.findall(text), f"shoal {words} -h: {PLACEHOLDER.findall(text)}"
        assert all(len(line) <= 80 for line in text.splitlines()), f"shoal {words} -h:\n{text}"
        tail = text[text.rindex("Examples:") :].splitlines()[1:]
        # Each a command line of its own, indented under the heading.
        assert tail and all(re.match(r"    (\w+=\S+ )?shoal ", line) for line in tail), tail


def test_a_missing_run_is_called_run(tmp_path: Path) -> None:
    got = shoal("cancel", cwd=tmp_path)
    assert got.returncode == 2
    assert "Missing argument 'RUN'." in got.stderr
    assert "cancel [OPTIONS] RUN\n" in got.stderr


def test_jobs_says_what_its_default_means_and_zero_alone_is_refused(tmp_path: Path) -> None:
    text = _help("run", "--help", tmp_path).stdout
    jobs = text[text.index("-j, --jobs N") : text.index("--slots")]
    assert "one per core" in jobs and "default: 0" not in jobs
    write(tmp_path / "t.yaml", "tasks:\n  - {name: a, run: echo hi}\n")
    got = shoal("run", "t.yaml", "-j", "0", cwd=tmp_path)
    assert got.returncode == 2
    assert got.stderr.startswith("shoal: -j 0: give the number of workers to start here")
    assert got.stderr.count("\n") == 1 and got.stdout == ""
    assert not (tmp_path / ".shoal" / "shoal.db").exists()  # nothing ran


def _boss_in_a_terminal(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    controller, terminal = os.openpty()
    boss = subprocess.Popen(
        [sys.executable, "-m", "shoal", "boss", "--listen", "127.0.0.1:0", *extra],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=SRC, TERM="xterm"),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    return boss, controller


def _stop(boss: subprocess.Popen[bytes], controller: int) -> None:
    if boss.poll() is None:
        boss.send_signal(signal.SIGINT)
        try:
            boss.wait(30)
        except subprocess.TimeoutExpired:
            boss.kill()
            boss.wait()
    os.close(controller)


def test_boss_in_a_terminal_says_where_its_dashboard_and_token_are(tmp_path: Path) -> None:
    boss, controller = _boss_in_a_terminal(tmp_path)
    seen = bytearray()
    try:
        read_until(controller, b"Ctrl-C", seen)
        url = json.loads((tmp_path / ".shoal" / "boss.json").read_text())["url"]
    finally:
        _stop(boss, controller)
    text = seen.decode()
    assert text.startswith(f"shoal boss serving {url} (state: {tmp_path / '.shoal'})")
    assert f"dashboard:     {url}/" in text
    assert "token:         in .shoal/token" in text
    assert f"shoal worker --boss {url} --token-file .shoal/token" in text
    assert (tmp_path / ".shoal" / "token").read_text().strip() not in text
    assert not any(line.startswith("{") for line in text.splitlines())


def test_boss_in_a_terminal_logs_json_when_asked(tmp_path: Path) -> None:
    boss, controller = _boss_in_a_terminal(tmp_path, "--log-format", "json")
    seen = bytearray()
    try:
        read_until(controller, b"}\r\n", seen)
    finally:
        _stop(boss, controller)
    first = json.loads(seen.decode().splitlines()[0])
    assert first["event"] == "boss_started" and first["url"].startswith("http://127.0.0.1:")


def test_a_boss_stops_at_once_with_a_dashboard_stream_open(procs: Procs, tmp_path: Path) -> None:
    info = start_boss(procs, tmp_path)
    boss = procs.procs[-1]
    host, port = info["url"].removeprefix("http://").split(":")
    stream = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        stream.request("GET", "/v1/stream", headers={"Authorization": f"Bearer {info['token']}"})
        answer = stream.getresponse()
        assert answer.status == 200 and answer.readline().startswith(b"data: ")
        boss.send_signal(signal.SIGTERM)
        # The stream would hold it until the tab closed: it ends, so the boss stops.
        boss.wait(20)
        # The stream has ended (the page reconnects to the next boss) rather than stalled.
        assert set(answer.read().split(b"\n")) <= {b"", b": keep-alive"}
    finally:
        stream.close()
    # It stopped cleanly: the state folder no longer names it.
    assert boss.returncode == -signal.SIGTERM
    assert not (tmp_path / ".shoal" / "boss.json").exists()


SETUP_FAILS = """
name: build
bundle: code
setup: |
  echo "no compiler on this host" >&2; exit 1
tasks:
  - {name: compile, run: make}
  - {name: test, run: make test, after: [compile]}
"""


def test_a_setup_failing_on_every_worker_fails_the_run_saying_why_once(tmp_path: Path) -> None:
    write(tmp_path / "code" / "Makefile", "all:\n\ttrue\n")
    write(tmp_path / "tasks.yaml", SETUP_FAILS)
    got = shoal("run", "tasks.yaml", "-j", "2", cwd=tmp_path, timeout=120)
    assert got.returncode == 1, got.stderr
    said = " ".join((got.stdout + got.stderr).split())  # the table wraps the cause
    assert said.count("bundle setup failed with exit code 1: no compiler") == 1, said
    assert "every worker exited" not in said
    status = json.loads(shoal("status", "--json", cwd=tmp_path).stdout)
    assert status["state"] == "failed"
    tasks = {t["name"]: t for t in json.loads(shoal("tasks", "--json", cwd=tmp_path).stdout)}
    assert tasks["compile"]["state"] == "failed"
    assert tasks["compile"]["cause"].startswith("bundle setup failed with exit code 1")
    assert "no compiler on this host" in tasks["compile"]["cause"]
    assert "on every worker: " in tasks["compile"]["cause"]
    assert tasks["test"]["state"] == "upstream_failed"


def test_a_setup_failing_on_the_only_worker_of_a_boss_fails_the_run(
    procs: Procs, tmp_path: Path
) -> None:
    info = start_boss(procs, tmp_path)
    write(tmp_path / "code" / "Makefile", "all:\n\ttrue\n")
    write(tmp_path / "tasks.yaml", SETUP_FAILS)
    assert shoal("submit", "tasks.yaml", "-q", cwd=tmp_path).stdout.strip() == "1"
    worker = shoal("worker", "--boss", info["url"], cwd=tmp_path, timeout=60)
    assert worker.returncode == 3, worker.stderr  # it takes no more tasks
    status = json.loads(shoal("status", "--json", cwd=tmp_path).stdout)
    assert status["state"] == "failed"

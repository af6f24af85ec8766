"""`shoal run FILE --hosts INVENTORY` opens its hosts' connections before the command line loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoal.launch.ssh import client, early


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []

    def connect_ahead(hosts: Any) -> None:
        calls.append([h.name for h in hosts])

    monkeypatch.setattr(client, "connect_ahead", connect_ahead)
    return calls


def test_the_hosts_of_a_run_are_reached_first_however_the_option_is_written(
    tmp_path: Path, opened: list[list[str]]
) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text(
        "hosts:\n  - {name: a, address: 127.0.0.1}\n  - {name: b, address: 127.0.0.2}\n"
    )
    early.connect_early(["run", "tasks.yaml", "--hosts", str(inventory)])
    early.connect_early(["run", f"--hosts={inventory}", "tasks.yaml", "-q"])
    assert opened == [["a", "b"], ["a", "b"]]


def test_nothing_is_reached_ahead_unless_a_run_names_a_good_inventory(
    tmp_path: Path, opened: list[list[str]]
) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("hosts:\n  - {name: a, address: 127.0.0.1}\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("hosts: [oops\n")
    for args in (
        [],
        ["up", "--hosts", str(inventory)],  # shoal up reaches its hosts as it starts anyway
        ["run", "tasks.yaml"],
        ["run", "tasks.yaml", "--hosts"],
        ["run", "tasks.yaml", "--hosts", str(inventory), "--help"],
        ["run", "--", "--hosts", str(inventory)],
        ["run", "tasks.yaml", "--hosts", str(broken)],  # the command says what is wrong
        ["run", "tasks.yaml", "--hosts", str(tmp_path / "missing.yaml")],
    ):
        early.connect_early(args)
    assert opened == []


def test_ctrl_c_while_shoal_loads_exits_130_without_a_traceback() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import shoal.launch.ssh.early as early\n"
        "def interrupted(args):\n"
        "    raise KeyboardInterrupt\n"
        "early.connect_early = interrupted\n"
        "sys.argv = ['shoal', 'run', 'tasks.yaml', '--hosts', 'hosts.yaml']\n"
        "from shoal.__main__ import main\n"
        "main()\n"
    )
    import os

    src = str(Path(__file__).resolve().parents[2] / "src")
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr

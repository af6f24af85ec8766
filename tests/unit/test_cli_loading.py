"""The ``shoal`` command loads the group of the command it runs, and only what that needs.

``shoal run`` must not pay for the boss's web stack, SQLAlchemy or the ssh
commands before it uses them: its local workers start while those load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shoal.cli import COMMANDS, GROUPS

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_each_command_is_loaded_from_the_group_that_defines_it() -> None:
    found: dict[str, str] = {}
    for group in GROUPS:
        out = _python(
            "import importlib, json\n"
            "from shoal.cli import common\n"
            f"importlib.import_module('shoal.cli.{group}')\n"
            "app = common.app\n"
            "print(json.dumps([c.name or c.callback.__name__ for c in app.registered_commands]"
            " + [g.name for g in app.registered_groups]))\n"
        )
        for name in json.loads(out):
            found.setdefault(name, group)  # gc imports data: data's group is data
    assert found == COMMANDS, "add each command to COMMANDS in shoal/cli/__init__.py"


def test_shoal_run_loads_no_other_command_group_and_no_boss_library() -> None:
    # What `shoal run` imports before it starts its local workers.
    out = _python(
        "import json, sys, shoal.cli\n"
        "shoal.cli.load_commands(['run'])\n"
        "import shoal.cli.progress, shoal.session\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = set(json.loads(out))
    others = sorted(f"shoal.cli.{g}" for g in GROUPS if g != "run")
    assert not loaded & set(others), loaded & set(others)
    heavy = {"sqlalchemy", "uvicorn", "starlette", "psycopg", "shoal.store", "shoal.boss.server"}
    assert not loaded & heavy, loaded & heavy


def test_help_lists_every_command_run_first() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shoal", "--help"],
        env={**os.environ, "PYTHONPATH": SRC, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    listed = [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()]
    assert sorted(listed) == sorted(COMMANDS)
    assert listed[:5] == ["run", "flow", "submit", "cancel", "retry"]


def test_the_ssh_modules_load_only_for_a_command_that_names_hosts() -> None:
    # The command ends with os._exit: what it loaded is said there.
    code = (
        "import json, os, sys\n"
        "sys.argv = ['shoal', *sys.argv[1:]]\n"
        "def said(code):\n"
        "    ssh = sorted(m for m in sys.modules if m.startswith('shoal.launch.ssh'))\n"
        "    sys.stdout.write(json.dumps(ssh) + '\\n')\n"
        "    sys.stdout.flush()\n"
        "    raise SystemExit(0)\n"
        "os._exit = said\n"
        "from shoal.__main__ import main\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}

    def ssh_modules(*args: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout.splitlines()[-1]))

    assert ssh_modules("run", "--help") == []
    # A bad inventory starts nothing early; the command says what is wrong.
    assert "shoal.launch.ssh.early" in ssh_modules(
        "run", "t.yaml", "--hosts=missing.yaml", "--help"
    )

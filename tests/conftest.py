"""Shared fixtures: state folders, a real boss in a thread, the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
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

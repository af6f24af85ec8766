"""Holes found by probing what a task can read of its worker's credentials."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import shoal, write

# What a hostile task does: read the environment its agent was started with.
PARENT_ENV = """
tasks:
  - name: spy
    run: "tr '\\\\0' '\\\\n' < /proc/$PPID/environ | grep '^SHOAL_TOKEN' || echo none-found"
"""


def test_a_task_cannot_read_the_worker_token_from_its_agents_environment(
    tmp_path: Path,
) -> None:
    """The agent drops SHOAL_TOKEN from os.environ, but /proc/PID/environ keeps what it started with.

    Every launcher (local, ssh, docker) starts its agent with the worker
    token in SHOAL_TOKEN, so any task reads it from its parent's environment
    and can register workers of its own with it.
    """
    write(tmp_path / "t.yaml", PARENT_ENV)
    proc = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    log = shoal("logs", "spy", cwd=tmp_path)
    assert log.returncode == 0, log.stderr
    assert "none-found" in log.stdout, log.stdout

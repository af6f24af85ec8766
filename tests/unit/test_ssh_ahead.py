"""`shoal run --hosts` connects to its hosts ahead, while the rest of it starts.

A fake ``ssh`` on PATH records every command it is given, so these tests see
what would reach the hosts without any host.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shoal.launch.ssh.client import SshHost, connect_ahead
from shoal.spec.inventory import Host

AGENT = "shoal-agent-0123456789abcdef.pyz"

FAKE_SSH = f"""#!/bin/sh
printf '%s\\n' "$*" >> "$SSH_CALLS"
for last; do :; done
case "$last" in *"ls -1"*) printf '{AGENT}\\n' ;; esac
exit 0
"""


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the fake ssh (first on PATH) writes each of its command lines to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    log = tmp_path / "calls"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SSH_CALLS", str(log))
    return log


def test_an_agent_started_after_connecting_ahead_asks_the_host_nothing_more(
    calls: Path, tmp_path: Path
) -> None:
    host = Host(name="h1", address=f"ahead-{tmp_path.name}.invalid")
    connect_ahead([host, host])  # a host given twice is asked once
    remote, copied = SshHost(host).ensure_agent(tmp_path / AGENT)
    assert (remote, copied) == (f"$HOME/.shoal/agent/{AGENT}", False)
    lines = calls.read_text().splitlines()
    assert len(lines) == 1, lines
    assert "ControlMaster=auto" in lines[0] and "ls -1" in lines[0]


def test_a_connection_made_ahead_and_never_used_is_closed_when_shoal_exits(
    calls: Path, tmp_path: Path
) -> None:
    # A run that stops before it starts its hosts (its task file is wrong,
    # say) leaves no master connection behind.
    code = (
        "from shoal.launch.ssh.client import connect_ahead\n"
        "from shoal.spec.inventory import Host\n"
        f"connect_ahead([Host(name='h1', address='unused-{tmp_path.name}.invalid')])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    lines = calls.read_text().splitlines()
    assert len(lines) == 2, lines
    assert "ls -1" in lines[0]
    assert "-O exit" in lines[1]

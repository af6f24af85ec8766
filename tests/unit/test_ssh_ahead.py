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


def test_a_host_that_does_not_answer_does_not_hold_up_an_exit(tmp_path: Path) -> None:
    # The host hangs (a firewall that drops): shoal, stopping on a mistake
    # in the task file, ends that ssh instead of waiting out its timeout.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(
        "#!/bin/sh\n"
        # The trap is set before the call is written down: the test waits for
        # that line, so an ssh ended after it always says so, however slow.
        "trap 'kill $pid; echo ended >> \"$SSH_CALLS\"; exit 143' TERM\n"
        "sleep 20 &\n"
        "pid=$!\n"
        'printf \'%s\\n\' "$*" >> "$SSH_CALLS"\n'
        'case "$*" in *"-O exit"*) kill $pid; exit 0 ;; esac\n'
        "wait $pid\n"
        'echo answered >> "$SSH_CALLS"\n'
    )
    (bin_dir / "ssh").chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    code = (
        "import time\n"
        "from shoal.launch.ssh.client import connect_ahead\n"
        "from shoal.spec.inventory import Host\n"
        f"connect_ahead([Host(name='h1', address='hangs-{tmp_path.name}.invalid')])\n"
        # Once the ssh has started.
        f"while not open({str(calls)!r}).read():\n"
        "    time.sleep(0.05)\n"
    )
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SSH_CALLS=str(calls))
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, env=env)
    lines = calls.read_text().splitlines()
    assert "ended" in lines and "answered" not in lines, lines
    assert "-O exit" in lines[-1]

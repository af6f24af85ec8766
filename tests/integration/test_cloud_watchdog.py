"""The VM's user-data, run here with ``sh``: its key lands, its watchdog powers off.

Nothing is ever powered off: ``SHOAL_POWEROFF`` is a script that writes a
marker file, ``SHOAL_WATCH_DIR`` and ``SHOAL_USER_HOME`` are folders of the
test. Every watchdog loop a test starts is stopped by its PID (its process
group: ``setsid`` made it a group leader) at the end.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shoal.exceptions import BadInput
from shoal.launch.cloud.watchdog import HEARTBEAT, TOUCH, user_data

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHz8aW5zdGVhZG9mYXJlYWxrZXl0aGlzaXNhdGVzdA shoal@test"
DEADLINE = 60.0


def gone(pid: int) -> bool:
    """Whether a process (not ours to reap) has ended: absent, or a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def wait_for(check: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < end, f"{what}: not within {DEADLINE}s"
        time.sleep(0.1)


class VM:
    """A folder standing for a fresh VM: its watch folder, its user's home, its power switch."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.watch = root / "watch"
        self.home = root / "home"
        self.marker = root / "powered-off"
        self.poweroff = root / "poweroff"
        self.poweroff.write_text(f'#!/bin/sh\necho "powered off" >> "{self.marker}"\n')
        self.poweroff.chmod(0o755)
        self.home.mkdir()
        self.pids: list[int] = []

    def boot(self, script: str, every: str = "0.5") -> int:
        """Run the user-data as cloud-init would (but here), and return its watchdog's PID."""
        path = self.root / "user-data"
        path.write_text(script)
        env = {
            "PATH": os.environ["PATH"],
            "SHOAL_WATCH_DIR": str(self.watch),
            "SHOAL_POWEROFF": str(self.poweroff),
            "SHOAL_WATCH_EVERY": every,
            "SHOAL_USER_HOME": str(self.home),
        }
        subprocess.run(["sh", str(path)], env=env, check=True, timeout=DEADLINE)
        pid_file = self.watch / "watchdog.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", "watchdog.pid")
        pid = int(pid_file.read_text())
        self.pids.append(pid)
        return pid

    def heartbeat(self) -> None:
        """What an agent does: touch the heartbeat file (the same shell words the lead uses)."""
        env = {"PATH": os.environ["PATH"], "SHOAL_WATCH_DIR": str(self.watch)}
        subprocess.run(["sh", "-c", TOUCH], env=env, check=True)

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGTERM)
                else:
                    os.kill(pid, signal.SIGTERM)
            wait_for(lambda p=pid: gone(p), f"watchdog {pid} stopped")


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[VM]:
    machine = VM(tmp_path)
    try:
        yield machine
    finally:
        machine.stop()


def test_the_watchdog_powers_off_when_no_agent_ran_for_idle_stop(vm: VM) -> None:
    started = time.time()
    pid = vm.boot(user_data(idle_stop=2, public_key=KEY, user=getpass.getuser()))
    # A fresh VM gets its full idle_stop: the heartbeat is made when the watchdog starts.
    assert (vm.watch / "agent-alive").stat().st_mtime >= started - 1
    wait_for(vm.marker.exists, "power-off")
    assert vm.marker.read_text() == "powered off\n"
    wait_for(lambda: gone(pid), "the watchdog ends once it powered off")


def test_an_agent_heartbeat_keeps_the_vm_on(vm: VM) -> None:
    pid = vm.boot(user_data(idle_stop=3, public_key=KEY, user=getpass.getuser()))
    beating = threading.Event()
    beating.set()

    def agent() -> None:
        while beating.is_set():
            vm.heartbeat()
            time.sleep(0.5)

    thread = threading.Thread(target=agent)
    thread.start()
    try:
        time.sleep(8)  # well past idle_stop, checked every 0.5 s
        assert not vm.marker.exists()
        assert not gone(pid)
    finally:
        beating.clear()
        thread.join()
    wait_for(vm.marker.exists, "power-off once the agent stopped")


def test_the_key_lands_once_and_a_second_boot_starts_no_second_watchdog(vm: VM) -> None:
    script = user_data(idle_stop=600, public_key=KEY, user=getpass.getuser())
    first = vm.boot(script)
    keys = vm.home / ".ssh" / "authorized_keys"
    assert keys.read_text() == KEY + "\n"
    assert (keys.stat().st_mode & 0o777, keys.parent.stat().st_mode & 0o777) == (0o600, 0o700)

    second = vm.boot(script)  # gce runs its startup-script at every boot
    assert second == first and not gone(first)
    assert keys.read_text() == KEY + "\n"
    vm.pids = [first]


def test_the_heartbeat_path_is_the_agents_to_touch() -> None:
    assert HEARTBEAT == "${SHOAL_WATCH_DIR:-/var/lib/shoal}/agent-alive"
    assert TOUCH == 'touch "${SHOAL_WATCH_DIR:-/var/lib/shoal}/agent-alive" 2>/dev/null || true'


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"public_key": "ssh-ed25519 AAAA\nrm -rf /"}, "public key"),
        ({"public_key": "not a key"}, "public key"),
        ({"user": "root; reboot"}, "login name"),
        ({"idle_stop": 0}, "idle_stop"),
    ],
)
def test_user_data_refuses_what_would_break_the_script(
    change: dict[str, object], words: str
) -> None:
    arguments: dict[str, object] = {"idle_stop": 600, "public_key": KEY, "user": "shoal", **change}
    with pytest.raises(BadInput, match=words) as refused:
        user_data(**arguments)  # type: ignore[arg-type]
    assert "\n" not in str(refused.value)

"""Stopping local workers: their end is seen as it happens, and one that will not end is killed."""

from __future__ import annotations

import subprocess
import sys

from shoal.launch.local import _ended_within


def _python(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_process_that_ends_is_seen_ended_and_reaped() -> None:
    proc = _python("import time; time.sleep(0.2)")
    assert _ended_within(proc, 60.0)
    assert proc.returncode == 0


def test_a_process_still_running_at_the_deadline_is_not_ended() -> None:
    proc = _python("import time; time.sleep(60)")
    try:
        assert not _ended_within(proc, 0.2)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_no_deadline_waits_for_the_end() -> None:
    proc = _python("pass")
    assert _ended_within(proc, None)
    assert proc.returncode == 0

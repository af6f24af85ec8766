"""An attempt's log kept within its cap: head, tail, and a line saying what was cut."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from shoal import protocol as p
from shoal.agent import runner as r
from shoal.agent.logcap import CappedLog, human_size, log_cap, parse_size
from shoal.datastore.logtail import tail_start


def capped(path: Path, data: bytes, cap: int, chunk: int = 65536) -> bytes:
    with CappedLog(str(path), cap) as log:
        for i in range(0, len(data), chunk):
            log.write(data[i : i + chunk])
    assert not Path(str(path) + ".tail").exists()  # the tail file is gone
    return path.read_bytes()


def numbered(n: int) -> bytes:
    return b"".join(b"line %d\n" % i for i in range(1, n + 1))


def test_a_log_under_the_cap_is_kept_whole(tmp_path: Path) -> None:
    data = numbered(100)
    assert capped(tmp_path / "a.log", data, 4096) == data
    # Past half the cap but within it: the tail joins the head, nothing cut.
    data = numbered(400)
    assert len(data) < 4096 and capped(tmp_path / "b.log", data, 4096, chunk=100) == data


def split(log: bytes) -> tuple[bytes, bytes, bytes]:
    """A cut log's head, note and tail."""
    head, rest = log.split(b"[... shoal cut ", 1)
    note, tail = rest.split(b"\n", 1)
    return head, b"[... shoal cut " + note, tail


def test_a_long_log_keeps_its_head_and_tail_and_says_what_was_cut(tmp_path: Path) -> None:
    data = numbered(200_000)  # 1.5 MB
    out = capped(tmp_path / "a.log", data, 64 * 1024)
    head, note, tail = split(out)
    assert head.startswith(b"line 1\nline 2\n") and tail.endswith(b"line 200000\n")
    assert data.startswith(head) and data.endswith(tail)  # whole lines at both ends
    middle = data[len(head) : len(data) - len(tail)]
    lines = middle.count(b"\n")
    assert note.decode() == (
        f"[... shoal cut {human_size(len(middle))} ({lines:,} lines) from the middle of this log ...]"
    )
    assert len(out) <= 64 * 1024 + len(note) + 1


def test_no_more_than_the_cap_is_ever_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    ring = Path(str(path) + ".tail")
    with CappedLog(str(path), 10_000) as log:
        for _ in range(2000):
            log.write(os.urandom(700))
            on_disk = path.stat().st_size + (ring.stat().st_size if ring.exists() else 0)
            assert on_disk <= 10_000
    assert path.stat().st_size <= 10_000 + 100


def test_however_the_output_comes_the_ends_are_kept_and_the_cut_counted(tmp_path: Path) -> None:
    rng = random.Random(7)
    for trial in range(100):
        data = b"".join(b"x" * rng.randint(0, 900) + b"\n" for _ in range(rng.randint(1, 60)))
        cap = rng.choice([1024, 3000, 8192])
        chunk = rng.choice([3, 17, 700, 4096, 65536])
        out = capped(tmp_path / f"{trial}.log", data, cap, chunk=chunk)
        if len(data) <= cap:
            assert out == data
            continue
        head, note, tail = split(out)
        if not data.startswith(head):
            head = head[:-1]  # a line longer than the head was cut; the note starts a line
        assert data.startswith(head) and data.endswith(tail)
        assert len(head) <= cap // 2 and len(head) + len(tail) <= cap
        middle = data[len(head) : len(data) - len(tail)]
        lines = middle.count(b"\n")
        assert f"{human_size(len(middle))} ({lines:,} lines)".encode() in note


def test_the_runner_caps_a_task_that_prints_too_much(tmp_path: Path) -> None:
    class Uploads:
        def __init__(self) -> None:
            self.logs: dict[str, bytes] = {}

        def upload_log(self, attempt_id: int, local: str, patient: bool = True) -> None:
            self.logs[p.log_path(1, "t", attempt_id)] = Path(local).read_bytes()

    client = Uploads()
    runner = r.Runner(client, str(tmp_path), "w", log_cap=100_000)  # type: ignore[arg-type]
    a = p.Assignment(attempt_id=1, run_id=1, run="r", task="t", number=1, run_cmds=["seq 1 300000"])
    try:
        report = runner.run(r.Attempt(a))
    finally:
        runner.close()
    assert report.outcome == p.SUCCEEDED and report.result == 300000
    log = client.logs[p.log_path(1, "t", 1)]
    assert log.startswith(b"1\n2\n") and log.endswith(b"\n299999\n300000\n")
    assert b"[... shoal cut " in log and len(log) <= 100_000 + 100


def test_sizes_read_as_people_write_them() -> None:
    assert parse_size("8M") == 8 * 1024**2 == parse_size("8MiB") == parse_size("8 mb")
    assert parse_size("512K") == 512 * 1024 and parse_size("1.5G") == 3 * 1024**3 // 2
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError, match="'lots' is not a size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="too small"):
        log_cap("10")


def test_tail_start_finds_the_last_lines() -> None:
    data = numbered(50_000)
    f = io.BytesIO(data)
    assert data[tail_start(f, 3, len(data)) :] == b"line 49998\nline 49999\nline 50000\n"
    assert tail_start(f, 0, len(data)) == len(data)
    assert tail_start(f, 10**9, len(data)) == 0
    unended = b"a\nb\nc"
    assert unended[tail_start(io.BytesIO(unended), 2, 5) :] == b"b\nc"
    assert tail_start(io.BytesIO(b""), 3, 0) == 0

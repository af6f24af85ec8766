"""A task's outputs are those of the attempt that won it, whatever the others do.

An attempt's outputs wait apart until its report wins the task; an attempt
that lost its task (frozen, its lease run out, a backup done meanwhile) is
refused when it sends anything for it, even mid-upload; a half-sent upload
is dropped and leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import Procs, shoal, shoal_json, start_boss, start_worker, wait_for, write
from tests.proxy import Proxy

SIZE = 3_000_000  # bytes of output: tens of seconds through the throttled link


def test_a_frozen_attempt_cannot_replace_the_winners_output(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path, "--lease", "2", "--no-speculate")
    boss = urlsplit(info["url"])
    proxy = Proxy((boss.hostname or "127.0.0.1", boss.port or 0))
    try:
        proxy.throttle = 100_000  # the first worker's link: 30 s for the output
        slow = procs.start(
            "worker", "--boss", proxy.url, "--slots", "1", "--name", "slow",
            cwd=tmp_path, env={"SHOAL_TOKEN": info["token"]},
        )  # fmt: skip
        # Every attempt writes its own number all through the same output file.
        write(
            tmp_path / "tasks.yaml",
            f"""
tasks:
  - name: make
    run: head -c {SIZE} /dev/zero | tr '\\0' "$SHOAL_ATTEMPT" > out.bin
    outputs: [out.bin]
""",
        )
        run = shoal("submit", "tasks.yaml", cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        data = tmp_path / ".shoal" / "data"

        def uploading() -> bool:
            return any(data.glob(".staging/*/.upload-*"))

        wait_for(uploading, 60, "the first attempt's upload to begin")
        os.kill(slow.pid, signal.SIGSTOP)  # frozen mid-upload: no syncs, its lease runs out
        try:
            # A backup worker, on a good link, runs attempt 2 and wins the task.
            start_worker(procs, tmp_path, info, "quick")

            def won() -> bool:
                tasks = shoal_json("tasks", cwd=tmp_path)
                return bool(tasks[0]["state"] == "succeeded")

            wait_for(won, 60, "the second attempt to win")
        finally:
            proxy.throttle = None
            os.kill(slow.pid, signal.SIGCONT)

        # The frozen attempt wakes, finishes sending its output, and reports.
        def dropped() -> bool:
            events = shoal_json("events", cwd=tmp_path)
            return any(e["kind"] == "report_dropped" for e in events)

        wait_for(dropped, 60, "the first attempt's late report")
        out = data / "runs" / "1" / "make" / "out.bin"
        content = out.read_bytes()
        assert len(content) == SIZE and set(content) == {ord("2")}, "a loser's bytes were kept"
        task = shoal_json("tasks", cwd=tmp_path)[0]
        assert task["attempts"] == 2 and task["outputs"] == ["out.bin"], task
        # Nothing half-written or staged is left, and listings never show such files.
        assert not list(data.rglob(".upload-*"))
        assert not any((data / ".staging").iterdir())
    finally:
        proxy.close()


def test_an_upload_that_stops_sending_is_dropped_and_leaves_nothing(
    tmp_path: Path, procs: Procs
) -> None:
    from shoal.boss.api import Limits
    from shoal.boss.server import Boss

    boss = Boss(
        db=tmp_path / "shoal.db", data=tmp_path / "data", token="t",
        limits=Limits(upload_idle=1.0),
    )  # fmt: skip
    boss.start()
    try:
        port = urlsplit(boss.url).port
        with socket.create_connection(("127.0.0.1", port or 0)) as s:
            s.sendall(
                b"PUT /v1/data/sets/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n"
                + b"x"
                * 1000
            )

            def temporary() -> list[Path]:
                return list((tmp_path / "data").rglob(".upload-*"))

            wait_for(temporary, 10, "the upload to begin")
            s.settimeout(30)
            answer = s.recv(65536).decode()  # the boss gives up on it, and says so
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "sent nothing for 1s" in answer
        assert not temporary() and not (tmp_path / "data" / "sets" / "big.bin").exists()
    finally:
        boss.stop()


def test_outputs_are_written_only_by_their_attempts(tmp_path: Path) -> None:
    """The datastore route refuses task outputs; a fenced attempt's output is refused."""
    from shoal import protocol as p
    from shoal.agent.client import AgentClient, BossRefused
    from shoal.boss.server import Boss
    from shoal.spec import spec_from_dict

    boss = Boss(db=tmp_path / "shoal.db", data=tmp_path / "data", token="t")
    boss.start()
    try:
        client = AgentClient(boss.url, "t")
        payload = tmp_path / "payload"
        payload.write_text("forged")
        try:
            client.upload("runs/1/make/out.txt", str(payload))
            raise AssertionError("a task output was written through the datastore route")
        except BossRefused as e:
            assert e.status == 400 and "only the attempt that made an output" in e.message
        spec = spec_from_dict({"tasks": [{"name": "make", "run": "true", "outputs": ["o"]}]})
        boss.submit(spec)
        reg = client.register(p.Registration(name="w", host="h", slots=1))
        got = client.sync(p.SyncRequest(worker_id=reg.worker_id, free_slots=1))
        attempt = got.assignments[0].attempt_id
        client.upload_output(attempt, "o", str(payload))  # held: taken
        staged = tmp_path / "data" / ".staging" / str(attempt) / "o"
        assert staged.read_text() == "forged"
        # Listed by the boss's token: the registered client now holds its worker's own.
        admin = AgentClient(boss.url, "t")
        assert admin.call("GET", "/data?prefix=") == [], "staged files are listed"
        admin.drop_connection()
        boss.scheduler.cancel(1)
        try:
            client.upload_output(attempt, "o", str(payload))
            raise AssertionError("a cancelled attempt's output was taken")
        except BossRefused as e:
            assert e.status == 409 and "no longer holds task 'make'" in e.message
        assert not (tmp_path / "data" / "runs").exists()
        client.drop_connection()
    finally:
        boss.stop()

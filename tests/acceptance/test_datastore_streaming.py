"""Big outputs through the boss, on a local datastore and on S3 (moto on a loopback port).

A 200 MB output goes up through the boss and down to a dependent while the
boss's resident memory (read from /proc as it streams) stays under 150 MB;
a worker SIGKILLed halfway through an upload leaves nothing a dependent
could read, and the task runs again whole on another worker.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from shoal.datastore import open_datastore
from shoal.datastore.base import Datastore
from tests.conftest import (
    Procs,
    alive,
    boss_info,
    descendants,
    shoal,
    shoal_json,
    wait_for,
    write,
)
from tests.datastores import S3_ENV, MotoS3, moto_s3

MB = 1_000_000
RSS_LIMIT = 150 * 1024 * 1024


@dataclass
class Where:
    """A datastore for a boss: its ``--data`` arguments, the environment, and the store itself."""

    kind: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    s3: MotoS3 | None = None
    url: str = ""

    def open(self, cwd: Path) -> Datastore:
        if self.s3 is None:
            return open_datastore(cwd / ".shoal" / "data")
        return open_datastore(self.url, self.s3.options())

    def uploading(self, cwd: Path) -> bool:
        """Whether the boss is writing an upload now (it has not been put in place)."""
        if self.s3 is None:
            staged = cwd / ".shoal" / "data" / ".staging"
            return any(f.stat().st_size > 0 for f in staged.rglob(".upload-*"))
        return bool(self._multipart())

    def dropped(self, cwd: Path) -> bool:
        """Whether nothing of an upload cut off is left (no temporary file, no open upload)."""
        if self.s3 is None:
            return not list((cwd / ".shoal" / "data").rglob(".upload-*"))
        return not self._multipart()

    def _multipart(self) -> list[Any]:
        assert self.s3 is not None
        client: Any = self.s3.client()
        answer = client.list_multipart_uploads(Bucket="shoal-data")
        return list(answer.get("Uploads", []))


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        with moto_s3(tmp_path_factory.mktemp("moto")) as server:
            yield server


@pytest.fixture(params=["local", "s3"])
def where(request: pytest.FixtureRequest) -> Where:
    if request.param == "local":
        return Where("local", [])
    s3: MotoS3 = request.getfixturevalue("s3")
    url = s3.url()
    return Where(
        "s3", ["--data", url, "--data-option", f"endpoint_url={s3.endpoint}"], S3_ENV, s3, url
    )


def start(procs: Procs, cwd: Path, where: Where, *extra: str) -> dict[str, Any]:
    procs.start("boss", "--listen", "127.0.0.1:0", *where.args, *extra, cwd=cwd, env=where.env)

    def serving() -> dict[str, Any] | None:
        info = boss_info(cwd / ".shoal")
        return info if info is not None and alive(int(info["pid"])) else None

    info: dict[str, Any] = wait_for(serving, timeout=60, what="the boss to start")
    return info


def worker(procs: Procs, cwd: Path, info: dict[str, Any], name: str) -> Any:
    return procs.start(
        "worker",
        "--boss",
        info["url"],
        "--slots",
        "1",
        "--name",
        name,
        cwd=cwd,
        env={"SHOAL_TOKEN": info["token"]},
    )


def rss(pid: int, field_name: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field_name} for process {pid}")


def states(cwd: Path) -> dict[str, str]:
    return {t["name"]: t["state"] for t in shoal_json("tasks", cwd=cwd)}


BIG = f"""
tasks:
  - name: make
    run: head -c {200 * MB} /dev/urandom > big.bin && sha256sum big.bin | cut -c1-64 > big.sha
    outputs: [big.bin, big.sha]
  - name: check
    after: [make]
    run: test "$(sha256sum inputs/make/big.bin | cut -c1-64)" = "$(cat inputs/make/big.sha)"
"""


def test_a_200_mb_output_streams_through_a_boss_that_stays_under_150_mb(
    tmp_path: Path, procs: Procs, where: Where
) -> None:
    info = start(procs, tmp_path, where)
    boss_pid = int(info["pid"])
    worker(procs, tmp_path, info, "w1")
    highest = [rss(boss_pid)]
    done = threading.Event()

    def watch() -> None:  # the boss's resident memory, read from /proc as it streams
        while not done.wait(0.05):
            try:
                highest.append(rss(boss_pid))
            except (OSError, AssertionError):
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        write(tmp_path / "big.yaml", BIG)
        assert shoal("submit", "big.yaml", cwd=tmp_path).returncode == 0
        wait_for(
            lambda: shoal_json("status", cwd=tmp_path)["state"] in ("succeeded", "failed"),
            timeout=600,
            what="the 200 MB run",
        )
    finally:
        done.set()
        watcher.join()
    assert states(tmp_path) == {"make": "succeeded", "check": "succeeded"}
    stored = where.open(tmp_path)
    assert stored.size("runs/1/make/big.bin") == 200 * MB
    with stored.open_read("runs/1/make/big.sha") as f:
        made = f.read().decode().strip()  # the sha256 the task computed of what it made
    assert stored.info("runs/1/make/big.bin").sha256 == made
    peak = max(max(highest), rss(boss_pid, "VmHWM"))
    assert len(highest) > 10  # it was watched while it streamed
    assert peak < RSS_LIMIT, f"the boss's resident memory reached {peak / 2**20:.0f} MiB"


KILLED = f"""
tasks:
  - name: make
    run: head -c {300 * MB} /dev/zero > big.bin
    outputs: [big.bin]
  - name: use
    after: [make]
    run: stat -c %s inputs/make/big.bin
"""


def test_a_worker_killed_mid_upload_leaves_no_output_a_dependent_could_read(
    tmp_path: Path, procs: Procs, where: Where
) -> None:
    info = start(procs, tmp_path, where, "--lease", "3")
    first = worker(procs, tmp_path, info, "w1")
    write(tmp_path / "killed.yaml", KILLED)
    assert shoal("submit", "killed.yaml", cwd=tmp_path).returncode == 0
    wait_for(lambda: where.uploading(tmp_path), timeout=300, what="the output's upload to start")
    procs.extra.extend(descendants(first.pid))
    first.kill()  # SIGKILL: no goodbye, the upload cut off halfway
    first.wait()
    wait_for(lambda: where.dropped(tmp_path), timeout=60, what="the boss to drop the upload")
    stored = where.open(tmp_path)
    assert stored.listing("runs/") == []
    assert not stored.exists("runs/1/make/big.bin")
    assert states(tmp_path)["use"] not in ("running", "succeeded")
    # Another worker takes the task over once its lease ends, and the run ends whole.
    worker(procs, tmp_path, info, "w2")
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] in ("succeeded", "failed"),
        timeout=600,
        what="the run to end on the second worker",
    )
    assert states(tmp_path) == {"make": "succeeded", "use": "succeeded"}
    assert stored.size("runs/1/make/big.bin") == 300 * MB
    assert stored.verify("runs/1/make/big.bin") is not None

"""A stored file that rotted is caught when a task reads it: the task fails, saying which and whence.

Files are changed behind the datastore's back (on the boss's disk), after
they were written and recorded: an output a dependent is about to fetch, and
an input added to the datastore before the run.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shoal.datastore import open_datastore
from tests.conftest import (
    Procs,
    RunningBoss,
    shoal,
    shoal_json,
    start_boss,
    start_worker,
    wait_for,
    write,
)

RUN = """
tasks:
  - name: prep
    run: printf 'a,b\\n1,2\\n' > data.csv
    outputs: [data.csv]
  - name: gate
    run: while [ ! -e {go} ]; do sleep 0.1; done
  - name: use
    after: [prep, gate]
    run: cat inputs/prep/data.csv
  - name: table
    inputs: [tables/t.csv]
    run: cat tables/t.csv
"""


def tasks(cwd: Path) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in shoal_json("tasks", cwd=cwd)}


def test_a_corrupted_output_or_input_fails_the_task_that_reads_it_naming_the_file(
    tmp_path: Path, procs: Procs
) -> None:
    data = tmp_path / ".shoal" / "data"
    stored = open_datastore(data)
    stored.write_bytes("tables/t.csv", b"x,y\n3,4\n")  # as `shoal data add` would
    (data / "tables" / "t.csv").write_bytes(b"x,y\n3,5\n")  # the disk rots
    go = tmp_path / "go"
    write(tmp_path / "t.yaml", RUN.format(go=go))
    info = start_boss(procs, tmp_path)
    start_worker(procs, tmp_path, info, slots=2)
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(lambda: tasks(tmp_path)["prep"]["state"] == "succeeded", timeout=120, what="prep")
    output = data / "runs" / "1" / "prep" / "data.csv"
    assert output.read_bytes() == b"a,b\n1,2\n"
    output.write_bytes(b"a,b\n1,9\n")  # prep's output rots before its dependent reads it
    go.touch()
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] in ("succeeded", "failed"),
        timeout=120,
        what="the run to end",
    )
    seen = tasks(tmp_path)
    assert seen["use"]["state"] == "failed"
    assert (
        "'runs/1/prep/data.csv' (output of task 'prep' in run 1) is corrupt"
        in (seen["use"]["cause"])
    )
    assert seen["table"]["state"] == "failed"
    assert "'tables/t.csv' (an input added to the datastore) is corrupt" in seen["table"]["cause"]
    # Nothing corrupt was left in the workspaces for the commands to read.
    assert "1,9" not in shoal("logs", "use", cwd=tmp_path).stdout
    assert "3,5" not in shoal("logs", "table", cwd=tmp_path).stdout
    # The boss saw it too as it sent the file, and said so in its log.
    corrupt = [
        line for line in procs.log(procs.procs[0]).splitlines() if "datastore_corrupt" in line
    ]
    assert any("runs/1/prep/data.csv" in line for line in corrupt)
    assert any("tables/t.csv" in line for line in corrupt)


def test_a_download_carries_the_recorded_sha256_and_records_cannot_be_written(
    boss: RunningBoss,
) -> None:
    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, Any, bytes]:
        request = urllib.request.Request(
            boss.url + path,
            data=body,
            method=method,
            headers={
                "Authorization": f"Bearer {boss.token}",
                "Content-Type": "application/octet-stream",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    assert call("PUT", "/v1/data/sets/a.csv", b"a,b\n")[0] == 200
    status, headers, body = call("GET", "/v1/data/sets/a.csv")
    assert (status, body) == (200, b"a,b\n")
    assert headers["X-Shoal-Sha256"] == hashlib.sha256(b"a,b\n").hexdigest()
    status, _, body = call("PUT", "/v1/data/.integrity/sets/a.csv", b'{"sha256": "forged"}')
    assert status == 400
    assert b"where the datastore records each file's sha256" in body
    assert (
        call("GET", "/v1/data/sets/a.csv")[1]["X-Shoal-Sha256"]
        == hashlib.sha256(b"a,b\n").hexdigest()
    )

"""``shoal run --data s3://...`` end to end, on moto's S3 on a loopback port.

The outputs go to the bucket, dependents get them from there, every file has
its record of sha256 beside it, and the commands run after the run (no boss)
read the same bucket: the state folder remembers where the data lives.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shoal, shoal_json, write
from tests.datastores import BUCKET, S3_ENV, MotoS3, moto_s3

RUN = """
tasks:
  - name: prep
    run: seq 1 100000 > data.csv
    outputs: [data.csv]
  - name: sim-{seed}
    matrix: {seed: [1, 2, 3]}
    after: [prep]
    run: awk -v s={seed} '{t += $1 * s} END {print t}' inputs/prep/data.csv > out.txt
    outputs: [out.txt]
  - name: total
    after: ["sim-*"]
    run: cat inputs/*/out.txt | awk '{t += $1} END {print t}'
"""


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[MotoS3]:
    with moto_s3(tmp_path / "moto") as server:
        yield server


def objects(s3: MotoS3, prefix: str) -> dict[str, bytes]:
    client: Any = s3.client()
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
            found[item["Key"][len(prefix) :]] = body
    return found


def test_a_run_with_its_data_on_s3_hands_outputs_to_dependents_through_the_bucket(
    tmp_path: Path, s3: MotoS3
) -> None:
    write(tmp_path / "t.yaml", RUN)
    url = f"s3://{BUCKET}/lab/shoal"
    data = ["--data", url, "--data-option", f"endpoint_url={s3.endpoint}"]
    proc = shoal("run", "t.yaml", "-j", "2", *data, cwd=tmp_path, env=S3_ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    total = sum(range(1, 100001)) * (1 + 2 + 3)
    assert shoal_json("results", cwd=tmp_path, env=S3_ENV)["total"] == total
    stored = objects(s3, "lab/shoal/")
    assert stored["runs/1/prep/data.csv"] == "".join(f"{i}\n" for i in range(1, 100001)).encode()
    assert stored["runs/1/sim-2/out.txt"] == f"{sum(range(1, 100001)) * 2}\n".encode()
    # Each output's sha256 is recorded beside the tree, and nothing half-written was left.
    record = json.loads(stored[".integrity/runs/1/prep/data.csv"])
    assert record["sha256"] == hashlib.sha256(stored["runs/1/prep/data.csv"]).hexdigest()
    assert record["size"] == len(stored["runs/1/prep/data.csv"])
    assert not [key for key in stored if key.startswith(".staging/") or ".upload-" in key]
    assert not (tmp_path / ".shoal" / "data").exists()  # nothing went to the local folder
    # No boss runs now: `shoal logs` reads the log from the bucket the run used.
    logs = shoal("logs", "total", cwd=tmp_path, env=S3_ENV)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.strip() == str(total)
    # And `shoal data` reads the same bucket: the state folder remembers it, options and all.
    got = shoal("data", "get", "runs/1/sim-2/out.txt", "out.txt", cwd=tmp_path, env=S3_ENV)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "out.txt").read_text() == f"{sum(range(1, 100001)) * 2}\n"
    listed = shoal_json("data", "ls", "runs/1/prep", cwd=tmp_path, env=S3_ENV)
    assert [(e["path"], e["sha256"]) for e in listed] == [
        ("runs/1/prep/data.csv", record["sha256"])
    ]


def test_a_bad_data_url_or_option_is_one_line_and_exit_2(tmp_path: Path, s3: MotoS3) -> None:
    write(tmp_path / "t.yaml", RUN)
    endpoint = f"endpoint_url={s3.endpoint}"
    cases = {
        ("--data", "s3://no-such-bucket/x", "--data-option", endpoint): (
            "shoal: the datastore s3://no-such-bucket/x: there is no bucket "
            "'no-such-bucket'; make it first"
        ),
        ("--data", f"s3://{BUCKET}/x", "--data-option", "secret=abc"): (
            "shoal: --data-option secret is a secret: a command line is no place for it; give "
            "it through AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ~/.aws/credentials"
        ),
        ("--data", "sftp://me:hunter2@127.0.0.1/x"): (
            "shoal: the datastore URL sftp://me:***@127.0.0.1/x has a password in it: take it "
            "out and give it through ~/.ssh keys or the ssh agent (key_filename=PATH names a "
            "key file)"
        ),
        ("--data", "gs://bucket/x"): (
            "shoal: the datastore gs://bucket/x needs gcsfs: pip install 'shoal[gcs]'"
        ),
        (
            "--data-option",
            endpoint,
        ): "shoal: --data-option needs --data URL: the options go with a URL",
    }
    for args, line in cases.items():
        for command in (["run", "t.yaml", "-j", "1"], ["boss"]):
            proc = shoal(*command, *args, cwd=tmp_path, env=S3_ENV)
            assert (proc.returncode, proc.stderr.strip()) == (2, line), (command, args)
            assert "hunter2" not in proc.stdout + proc.stderr
    assert not (tmp_path / ".shoal" / "datastore.json").exists()

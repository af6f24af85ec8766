#!/usr/bin/env python3
"""Throughput of a big file up to and down from the datastore through the boss, against copying directly.

In one invocation, on this machine, for one file of ``--size`` bytes (1 GB by default):

* local: a ``shoal boss --data FOLDER``; the file goes up and comes back
  down through the boss the way a worker's outputs and inputs do (the agent's
  streamed ``PUT``/``GET``, sha256 recorded on the way up and checked on the
  way down), against ``cp`` into and out of a folder on the same disk;
* S3 (moto on a loopback port): a ``shoal boss --data s3://...``, against
  s3fs directly (``put_file``/``get_file``, what ``aws s3 cp`` does).

Printed: MB/s of each, and the ratio of shoal's throughput to the direct
copy's (1.00: as fast). Free disk space is checked with ``df`` first (the run
needs about five times the file); everything is removed afterwards.

    python bench/datastore.py [--size 1G] [--only local|s3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from shoal.agent.client import AgentClient  # noqa: E402
from tests.datastores import BUCKET, S3_ENV, moto_s3  # noqa: E402

MB = 1_000_000


def parse_size(text: str) -> int:
    units = {"K": 1000, "M": MB, "G": 1000 * MB}
    return int(float(text[:-1]) * units[text[-1].upper()]) if text[-1].isalpha() else int(text)


def free_bytes(folder: Path) -> int:
    """Free space where ``folder`` is, as ``df`` tells it."""
    out = subprocess.run(
        ["df", "-Pk", str(folder)], check=True, capture_output=True, text=True
    ).stdout
    return int(out.splitlines()[-1].split()[3]) * 1024


def timed(step: Callable[[], object]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def make_file(path: Path, size: int) -> str:
    """A file of random bytes; its sha256."""
    digest = hashlib.sha256()
    block = os.urandom(4 * 1024 * 1024)
    with path.open("wb") as f:
        left = size
        while left:
            chunk = block[: min(left, len(block))]
            f.write(chunk)
            digest.update(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def start_boss(
    work: Path, data: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str, str]:
    """A ``shoal boss`` in ``work/state``; its process, URL and token."""
    state = work / "state"
    full = dict(os.environ, PYTHONPATH=str(ROOT / "src"), **env)
    boss = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shoal",
            "boss",
            "--listen",
            "127.0.0.1:0",
            "--state",
            str(state),
            *data,
        ],
        env=full,
        stdout=subprocess.DEVNULL,
        stderr=(work / "boss.log").open("wb"),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            info = json.loads((state / "boss.json").read_text())
            if info.get("pid") == boss.pid:
                return boss, str(info["url"]), str(info["token"])
        except (FileNotFoundError, ValueError):
            pass
        if boss.poll() is not None:
            raise SystemExit(f"the boss exited: {(work / 'boss.log').read_text()}")
        time.sleep(0.1)
    raise SystemExit("the boss did not start within 60s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def through_boss(
    work: Path, source: Path, digest: str, data: list[str], env: dict[str, str]
) -> tuple[float, float]:
    """Seconds up and down through a boss serving the datastore ``data``."""
    boss, url, token = start_boss(work, data, env)
    try:
        client = AgentClient(url, token, timeout=600)
        back = work / "back.bin"
        up = timed(lambda: client.upload("bench/big.bin", str(source)))
        down = timed(lambda: client.download("bench/big.bin", str(back)))
        if sha256_of(back) != digest:
            raise SystemExit("the file came back different")
        back.unlink()
        return up, down
    finally:
        stop(boss)


def bench_local(work: Path, source: Path, digest: str) -> list[tuple[str, float, float]]:
    store = work / "store"
    store.mkdir()
    back = work / "back.bin"
    cp_up = timed(lambda: subprocess.run(["cp", str(source), str(store / "big.bin")], check=True))
    cp_down = timed(lambda: subprocess.run(["cp", str(store / "big.bin"), str(back)], check=True))
    back.unlink()
    shutil.rmtree(store)
    up, down = through_boss(work, source, digest, ["--data", str(work / "data")], {})
    shutil.rmtree(work / "data")
    return [("local: upload", up, cp_up), ("local: download", down, cp_down)]


def bench_s3(work: Path, source: Path, digest: str) -> list[tuple[str, float, float]]:
    os.environ.update(S3_ENV)
    import s3fs

    with moto_s3(work / "moto") as s3:
        fs = s3fs.S3FileSystem(endpoint_url=s3.endpoint)
        key = f"{BUCKET}/direct/big.bin"
        back = work / "back.bin"
        direct_up = timed(lambda: fs.put_file(str(source), key))
        direct_down = timed(lambda: fs.get_file(key, str(back)))
        back.unlink()
        fs.rm_file(key)
        data = ["--data", f"s3://{BUCKET}/shoal", "--data-option", f"endpoint_url={s3.endpoint}"]
        up, down = through_boss(work, source, digest, data, S3_ENV)
    return [("S3 (moto): upload", up, direct_up), ("S3 (moto): download", down, direct_down)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1G", help="the file's size (1G, 200M...)")
    parser.add_argument("--only", choices=["local", "s3"], help="one datastore only")
    args = parser.parse_args()
    size = parse_size(args.size)
    base = Path(tempfile.gettempdir())
    if free_bytes(base) < 5 * size:
        raise SystemExit(
            f"not enough free space in {base} (df): the bench needs {5 * size / 1e9:.1f} GB"
        )
    work = Path(tempfile.mkdtemp(prefix="shoal-bench-datastore-"))
    try:
        source = work / "big.bin"
        digest = make_file(source, size)
        rows = []
        if args.only in (None, "local"):
            rows += bench_local(work, source, digest)
        if args.only in (None, "s3"):
            rows += bench_s3(work, source, digest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{size / 1e9:g} GB file; direct copy: cp (local), s3fs put_file/get_file (S3)")
    print(f"{'':22} {'shoal MB/s':>11} {'direct MB/s':>12} {'ratio':>6}")
    for name, shoal_s, direct_s in rows:
        print(
            f"{name:22} {size / MB / shoal_s:11.0f} {size / MB / direct_s:12.0f} "
            f"{direct_s / shoal_s:6.2f}"
        )


if __name__ == "__main__":
    main()

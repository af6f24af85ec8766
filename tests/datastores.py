"""Datastores on loopback for tests: S3 on a moto server, SFTP on an sshd of the test's own.

``moto_s3(root)`` starts moto in a process of its own on a free 127.0.0.1
port (as ``tests/cloudlab.py`` does) and gives its endpoint; ``sftp_host(root)``
starts ``/usr/sbin/sshd`` on a free 127.0.0.1 port with a throwaway host key
and a throwaway key authorized for the user running the tests. Both are
stopped by their PID on leaving. ``S3_ENV`` is the (fake) credentials moto
takes, given the way a user's would be: in the environment.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cloudlab import start_moto, stop_process

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "shoal-data"


@dataclass
class MotoS3:
    """moto's S3 at ``endpoint``, with the bucket ``BUCKET`` made; ``pid``: moto's process."""

    endpoint: str
    pid: int

    def url(self) -> str:
        """A fresh folder of the bucket, as a datastore URL."""
        return f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"

    def options(self) -> dict[str, str]:
        return {"endpoint_url": self.endpoint}

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        )


@contextlib.contextmanager
def moto_s3(root: Path) -> Iterator[MotoS3]:
    """moto's S3 server on a loopback port, stopped (by PID) on leaving."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "moto.port").unlink(missing_ok=True)  # one left by an earlier server in the same folder
    proc, endpoint = start_moto(root)
    try:
        s3 = MotoS3(endpoint, proc.pid)
        s3.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
        yield s3
    finally:
        stop_process(proc)


@dataclass
class SftpHost:
    """An sshd on 127.0.0.1:``port`` taking ``key`` for ``user``; ``pid``: sshd's process."""

    port: int
    user: str
    key: Path
    home: Path
    pid: int

    def url(self) -> str:
        """A fresh folder on the host, as a datastore URL."""
        return f"sftp://{self.user}@127.0.0.1:{self.port}{self.home}/{uuid.uuid4().hex[:12]}"

    def options(self) -> dict[str, str]:
        return {"key_filename": str(self.key), "look_for_keys": "false", "allow_agent": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sftp_host(root: Path) -> Iterator[SftpHost]:
    """An sshd of the test's own on a loopback port, stopped (by PID) on leaving."""
    etc = root / "sshd"
    home = root / "sftp-home"
    etc.mkdir(parents=True, exist_ok=True)
    home.mkdir(exist_ok=True)
    # Debian's sshd wants its privilege separation folder (the service makes it).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for name in ("host_key", "user_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(etc / name)],
            check=True,
            capture_output=True,
        )
    (etc / "authorized_keys").write_text((etc / "user_key.pub").read_text())
    port = free_port()
    config = etc / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\n"
        f"HostKey {etc / 'host_key'}\n"
        f"PidFile {etc / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {etc / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nMaxSessions 50\nMaxStartups 50\n"
        "Subsystem sftp internal-sftp\n"
    )
    proc = subprocess.Popen(
        ["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(etc / "sshd.log")],
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None:
                raise AssertionError(f"sshd exited: {(etc / 'sshd.log').read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("sshd did not start listening within 30s")
            time.sleep(0.05)
        yield SftpHost(port, getpass.getuser(), etc / "user_key", home, proc.pid)
    finally:
        stop_process(proc)


def s3_environment() -> dict[str, str]:
    """The environment with moto's fake credentials in it, for a process of shoal's."""
    return {**os.environ, **S3_ENV}

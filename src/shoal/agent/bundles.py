"""Bundles on a worker: fetched once per host by content hash, unpacked safely, set up once.

Standard library only, like all of the agent. :func:`extract_tar` is
also how the command line reads a bundle given as a tar archive, so both
sides refuse the same archives.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import threading
from typing import Dict, Optional

from shoal import protocol as p
from shoal.agent.client import AgentClient
from shoal.datastore.layout import bundle_path
from shoal.exceptions import ShoalError

__all__ = ["BundleCache", "SetupFailed", "extract_tar"]


def extract_tar(tar: tarfile.TarFile, dest: str) -> None:
    """Unpack every member of ``tar`` into ``dest``; ValueError naming the first that could leave it.

    Refused: an absolute name or one with ``..``, and a link (symbolic or
    hard) to an absolute path or through ``..``. Where Python's tarfile has
    extraction filters (3.12, and the security releases of 3.8 and later),
    its ``data`` filter applies as well: no devices, no set-user-id bits.
    """
    for member in tar.getmembers():
        name = member.name
        if name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"{name} points outside the archive")
        link = member.linkname
        if (member.issym() or member.islnk()) and (link.startswith("/") or ".." in link.split("/")):
            raise ValueError(f"{name} is a link that points outside the archive")
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
    else:  # pragma: no cover - a Python without extraction filters
        tar.extractall(dest)


class SetupFailed(ShoalError):
    """A bundle's setup command failed on this worker."""


class BundleCache:
    """Bundles unpacked once per worker host, by content hash, with setup run once."""

    def __init__(self, root: str, client: AgentClient, shell: str) -> None:
        self.root = root
        self.client = client
        self.shell = shell  # what runs the setup, with -e
        self._locks: Dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        os.makedirs(root, exist_ok=True)

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def ensure(self, digest: str, setup: Optional[str], env: Dict[str, str]) -> str:
        """The folder holding this bundle, fetched, unpacked and set up if need be."""
        folder = os.path.join(self.root, digest)
        setup_key = hashlib.sha256((setup or "").encode()).hexdigest()[:16]
        marker = os.path.join(folder, ".shoal-setup-" + setup_key)
        if os.path.exists(marker):
            return folder
        # Other agents on this host share the cache: lock across processes too.
        lock_path = os.path.join(self.root, digest + ".lock")
        with self._lock(digest), open(lock_path, "w") as lockfile:
            fcntl.flock(lockfile, fcntl.LOCK_EX)
            if not os.path.isdir(folder):
                self._unpack(digest, folder)
            if not os.path.exists(marker):
                if setup:
                    self._setup(folder, setup, env)
                open(marker, "w").close()
        return folder

    def _unpack(self, digest: str, folder: str) -> None:
        archive = os.path.join(self.root, digest + ".tar.gz")
        self.client.download(bundle_path(digest), archive)
        tmp = folder + ".unpacking"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        with tarfile.open(archive) as tar:
            try:
                extract_tar(tar, tmp)
            except (ValueError, tarfile.TarError) as e:
                raise SetupFailed(f"bundle {digest}: {e}") from None
        os.replace(tmp, folder)
        os.unlink(archive)

    def _setup(self, folder: str, setup: str, env: Dict[str, str]) -> None:
        log_path = os.path.join(folder, ".shoal-setup.log")
        with open(log_path, "wb") as log:
            proc = subprocess.run(
                [self.shell, "-e", "-c", setup],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        if proc.returncode != 0:
            with open(log_path, "rb") as f:
                tail = f.read()[-2000:].decode("utf-8", "replace").strip().splitlines()[-5:]
            raise SetupFailed(
                "{} with exit code {}: {} (setup log: {})".format(
                    p.SETUP_FAILED, proc.returncode, " | ".join(tail), log_path
                )
            )

"""Bundles: a folder of code and data shipped to every worker, named by content.

The digest covers each file's relative path, mode bit for execution and bytes,
so the same folder gives the same digest on any machine and at any time; the
archive is a tar.gz with its metadata normalised.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path

__all__ = ["digest_folder", "pack_folder"]


def _files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in (".git", "__pycache__", ".shoal"))
        for name in sorted(files):
            out.append(Path(root) / name)
    return out


def digest_folder(folder: Path) -> str:
    """A content hash of the folder (sha256, hex, 32 characters)."""
    h = hashlib.sha256()
    for f in _files(folder):
        rel = f.relative_to(folder).as_posix()
        executable = os.access(f, os.X_OK)
        h.update(f"{rel}\0{int(executable)}\0{f.stat().st_size}\0".encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:32]


def pack_folder(folder: Path) -> tuple[str, Path]:
    """The folder's digest and a temporary tar.gz of it (the caller deletes it)."""
    digest = digest_folder(folder)
    fd, name = tempfile.mkstemp(suffix=".tar.gz", prefix="shoal-bundle-")
    os.close(fd)
    with tarfile.open(name, "w:gz") as tar:
        for f in _files(folder):
            info = tar.gettarinfo(str(f), arcname=f.relative_to(folder).as_posix())
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with f.open("rb") as fh:
                    tar.addfile(info, fh)
            elif info.issym():
                tar.addfile(info)
            else:
                tar.addfile(info, io.BytesIO(b""))
    return digest, Path(name)

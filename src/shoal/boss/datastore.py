"""The datastore the boss serves by default: a local folder.

Paths are relative and use ``/``; nothing outside the root can be named.
Writes go to a temporary file first and are renamed into place, so a reader
never sees half a file and a failed upload leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterable
from pathlib import Path, PurePosixPath

from shoal.exceptions import BadInput, NotFound

__all__ = ["LocalDatastore"]

CHUNK = 256 * 1024


class LocalDatastore:
    """Files under one folder, addressed by relative POSIX paths."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        """The file behind a datastore path; refuses paths that leave the root."""
        pure = PurePosixPath(path)
        if not path or pure.is_absolute() or any(part in ("..", "") for part in pure.parts):
            raise BadInput(f"bad datastore path '{path}': use a relative path without '..'")
        return self.root.joinpath(*pure.parts)

    def exists(self, path: str) -> bool:
        return self.resolve(path).is_file()

    def open_path(self, path: str) -> Path:
        target = self.resolve(path)
        if not target.is_file():
            raise NotFound(f"no file '{path}' in the datastore")
        return target

    def listing(self, prefix: str) -> list[str]:
        """Every file under a folder of the datastore, as datastore paths."""
        base = self.resolve(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        return sorted(
            str(PurePosixPath(*p.relative_to(self.root).parts))
            for p in base.rglob("*")
            if p.is_file()
        )

    async def write_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Store a file from an async stream of chunks; its size."""
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in chunks:
                    f.write(chunk)
                    size += len(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size

    def write_bytes(self, path: str, data: bytes) -> None:
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)

    def write_file(self, path: str, source: str | os.PathLike[str]) -> None:
        """Copy a local file into the datastore."""
        import shutil

        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        os.close(fd)
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)

    def tail(self, path: str, lines: int) -> list[str]:
        """The last lines of a text file, reading only its end."""
        target = self.resolve(path)
        if not target.is_file():
            return []
        with target.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
        return data.decode("utf-8", "replace").splitlines()[-lines:]

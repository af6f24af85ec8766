"""The datastore the boss serves by default: a local folder.

Paths are relative and use ``/``; nothing outside the root can be named.
Writes go to a temporary file first and are renamed into place, so a reader
never sees half a file and a failed upload leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

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

    @contextmanager
    def _placing(self, path: str) -> Iterator[BinaryIO]:
        """A file to write, renamed to ``path`` once complete, removed if anything fails."""
        target = self.resolve(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def write_stream(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Store a file from an async stream of chunks; its size."""
        size = 0
        with self._placing(path) as f:
            async for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
        return size

    def write_bytes(self, path: str, data: bytes) -> None:
        with self._placing(path) as f:
            f.write(data)

    def write_file(self, path: str, source: str | os.PathLike[str]) -> None:
        """Copy a local file into the datastore."""
        with self._placing(path) as f, open(source, "rb") as src:
            shutil.copyfileobj(src, f, CHUNK)

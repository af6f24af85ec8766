"""The datastore the boss serves by default: a local folder.

Paths are relative and use ``/``; nothing outside the root can be named.
Writes go to a temporary file first and are renamed into place, so a reader
never sees half a file and a failed upload leaves nothing behind. An
attempt's outputs wait under ``.staging/<attempt>/`` until its report wins
the task; then they are renamed into ``runs/<run>/<task>/`` (promoted), and
the staged files of attempts that lost are removed. Neither temporary files
nor staged outputs are ever listed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from shoal import protocol as p
from shoal.exceptions import BadInput, DatastoreError, NotFound, UploadStalled

__all__ = ["LocalDatastore"]

CHUNK = 256 * 1024
TEMPORARY = ".upload-"
# Longest file name most file systems take, in bytes.
NAME_MAX = 255


class LocalDatastore:
    """Files under one folder, addressed by relative POSIX paths."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        """The file behind a datastore path; refuses paths that leave the root."""
        pure = PurePosixPath(path)
        if (
            not pure.parts
            or "\0" in path
            or pure.is_absolute()
            or any(part in ("..", ".", "") for part in pure.parts)
        ):
            raise BadInput(f"bad datastore path '{_shown(path)}': use a relative path without '..'")
        if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in pure.parts):
            raise BadInput(
                f"bad datastore path '{_shown(path)}': a name in it is longer than {NAME_MAX} bytes"
            )
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
        found = []
        for f in base.rglob("*"):
            parts = f.relative_to(self.root).parts
            if parts[0] == p.STAGING or f.name.startswith(TEMPORARY) or not f.is_file():
                continue
            found.append(str(PurePosixPath(*parts)))
        return sorted(found)

    @contextmanager
    def _placing(self, path: str) -> Iterator[BinaryIO]:
        """A file to write, renamed to ``path`` once complete, removed if anything fails."""
        target = self.resolve(path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMPORARY)
        except OSError as e:
            raise _unwritable(path, e) from e
        try:
            with os.fdopen(fd, "wb") as f:
                yield f
            os.replace(tmp, target)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise _unwritable(path, e) from e
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    async def write_stream(
        self, path: str, chunks: AsyncIterable[bytes], idle_timeout: float | None = None
    ) -> int:
        """Store a file from an async stream of chunks; its size.

        A stream that sends nothing for ``idle_timeout`` seconds (a client
        frozen or gone without closing) is given up, and nothing is stored.
        """
        size = 0
        with self._placing(path) as f:
            async for chunk in _within(chunks, idle_timeout):
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

    # -- outputs staged per attempt ----------------------------------------

    def promote(self, attempt_id: int, prefix: str, names: list[str]) -> list[str]:
        """Make an attempt's staged outputs the files under ``prefix``; the names missing.

        Each file is renamed into place (atomic per file). A name neither
        staged nor already in place (promoted by an earlier try of the same
        transaction) is returned, and the attempt cannot win with it.
        """
        staged = self.resolve(p.staging_prefix(attempt_id).rstrip("/"))
        missing = []
        for name in names:
            source = staged.joinpath(*PurePosixPath(name).parts)
            target = self.resolve(prefix + name)
            if source.is_file():
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
                except OSError as e:
                    raise _unwritable(prefix + name, e) from e
            elif not target.is_file():
                missing.append(name)
        return missing

    def discard_staged(self, attempt_ids: list[int]) -> None:
        """Remove what these attempts staged (they lost, failed or were promoted)."""
        for attempt_id in attempt_ids:
            shutil.rmtree(self.root / p.STAGING / str(attempt_id), ignore_errors=True)

    def staged_attempts(self) -> list[int]:
        """The attempts that have files staged."""
        folder = self.root / p.STAGING
        if not folder.is_dir():
            return []
        return [int(d.name) for d in folder.iterdir() if d.name.isdigit()]


async def _within(chunks: AsyncIterable[bytes], idle_timeout: float | None) -> AsyncIterator[bytes]:
    """The chunks of a stream, given up when one takes longer than ``idle_timeout``."""
    source = chunks.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(source.__anext__(), idle_timeout)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise UploadStalled(
                f"the upload sent nothing for {idle_timeout:g}s: it was dropped"
            ) from None
        yield chunk


def _unwritable(path: str, e: OSError) -> DatastoreError:
    return DatastoreError(
        f"the boss cannot write '{_shown(path)}' in its datastore: {e.strerror or e}"
    )


def _shown(path: str) -> str:
    """A datastore path fit for a one-line message (no control characters, not too long)."""
    text = path.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 120 else text[:117] + "..."

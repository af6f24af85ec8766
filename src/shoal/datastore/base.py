"""The datastore interface: a few primitives a backend implements, the rest derived.

A datastore holds files under relative ``/``-separated paths (see
:mod:`~shoal.datastore.layout` for the tree). A backend implements the
primitives: :meth:`~Datastore.exists`, :meth:`~Datastore.open_read`,
:meth:`~Datastore._write` (atomic: nothing is seen at the path until the
file is complete, and nothing is left when writing fails),
:meth:`~Datastore._files`, :meth:`~Datastore._remove` and
:meth:`~Datastore._move` (an atomic replace). The public methods are built
on those: :meth:`~Datastore.open_write`, :meth:`~Datastore.rename` and
:meth:`~Datastore.remove` keep each file's record of size and sha256 (see
:mod:`~shoal.datastore.integrity`) with it, :meth:`~Datastore.files` never
shows the records, and streams in, bytes, local files, listings and the
outputs staged per attempt come on top. A backend may override any of them
where it can do better.

Errors: a path that is not one is :class:`~shoal.exceptions.BadInput`, a
file that is not there :class:`~shoal.exceptions.NotFound`, a datastore
that cannot be written :class:`~shoal.exceptions.DatastoreError`, and a file
that does not match its record :class:`~shoal.datastore.integrity.Corrupt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import BinaryIO, cast

from shoal.datastore.integrity import Hashing, Record, record_path
from shoal.datastore.layout import RECORDS, STAGING, staging_prefix
from shoal.exceptions import BadInput, DatastoreError, NotFound, UploadStalled

__all__ = ["CHUNK", "NAME_MAX", "PATH_MAX", "Datastore", "FileInfo", "check_path", "shown"]

CHUNK = 256 * 1024
# Longest file name most file systems take, in bytes.
NAME_MAX = 255
# Longest datastore path, in bytes (an object store's key limit; well under the OS's).
PATH_MAX = 1024


def check_path(path: str) -> PurePosixPath:
    """A datastore path taken apart; :class:`BadInput` for one that could leave the root."""
    pure = PurePosixPath(path)
    if (
        not pure.parts
        or "\0" in path
        or pure.is_absolute()
        or any(part in ("..", ".", "") for part in pure.parts)
    ):
        raise BadInput(f"bad datastore path '{shown(path)}': use a relative path without '..'")
    if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise BadInput(f"bad datastore path '{shown(path)}': it is longer than {PATH_MAX} bytes")
    if any(len(part.encode("utf-8", "surrogateescape")) > NAME_MAX for part in pure.parts):
        raise BadInput(
            f"bad datastore path '{shown(path)}': a name in it is longer than {NAME_MAX} bytes"
        )
    return pure


def shown(path: str) -> str:
    """A datastore path fit for a one-line message (no control characters, not too long)."""
    text = path.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 120 else text[:117] + "..."


@dataclass(frozen=True)
class FileInfo:
    """What a listing shows of one stored file."""

    path: str
    size: int
    # Seconds since the epoch of the last write; None where the backend cannot tell.
    modified: float | None = None
    # The sha256 recorded when it was written; None where none was recorded.
    sha256: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "size": self.size,
            "modified": self.modified,
            "sha256": self.sha256,
        }


class Datastore(ABC):
    """Files under relative ``/``-separated paths; see the module's docstring."""

    # -- primitives ---------------------------------------------------------

    @abstractmethod
    def exists(self, path: str) -> bool:
        """Whether a complete file is at ``path``."""

    @abstractmethod
    def open_read(self, path: str) -> BinaryIO:
        """The file at ``path``, open for reading (seekable); NotFound if there is none."""

    @abstractmethod
    def _write(self, path: str) -> AbstractContextManager[BinaryIO]:
        """A file to write; it replaces ``path`` when the block ends, and is dropped if it fails.

        No record is kept: :meth:`open_write` does that.
        """

    @abstractmethod
    def _files(self, prefix: str) -> list[str]:
        """Every complete file under the folder ``prefix`` (``""``: all), records included."""

    @abstractmethod
    def _remove(self, path: str) -> None:
        """Remove the file or the whole folder at ``path``; nothing if it is not there.

        DatastoreError if it is there and cannot be removed.
        """

    @abstractmethod
    def _move(self, source: str, target: str) -> None:
        """Move the file at ``source`` to ``target`` in one step, replacing what was there."""

    def _modified(self, path: str) -> float | None:
        """When the file at ``path`` was last written, if the backend can tell."""
        return None

    # -- writing, with a record of each file --------------------------------

    @contextmanager
    def open_write(self, path: str) -> Iterator[BinaryIO]:
        """A file to write; it replaces ``path`` when the block ends, and is dropped if it fails.

        Its size and sha256 are recorded as it is put in place.
        """
        check_path(path)
        previous = self.record(path)
        with self._write(path) as raw:
            hashing = Hashing(raw)
            yield cast(BinaryIO, hashing)
            # Before the file is in place: a record is never older than its file.
            self._put_record(path, hashing.record(previous))

    def files(self, prefix: str) -> list[str]:
        """Every complete file under the folder ``prefix`` (``""``: all), as sorted paths."""
        return [f for f in self._files(prefix) if not f.startswith(RECORDS + "/")]

    def remove(self, path: str) -> None:
        """Remove the file or the whole folder at ``path``; nothing if it is not there.

        DatastoreError if it is there and cannot be removed.
        """
        check_path(path)
        self._remove(path)
        self._remove(record_path(path))

    def rename(self, source: str, target: str) -> None:
        """Move the file at ``source`` to ``target`` in one step, replacing what was there."""
        check_path(source)
        check_path(target)
        moved = self.record(source)
        if moved is not None:
            replaced = self.record(target)
            self._put_record(target, replace(moved, previous=replaced.sha256 if replaced else None))
        self._move(source, target)
        if moved is not None:
            with contextlib.suppress(DatastoreError):  # an orphan record is never read
                self._remove(record_path(source))

    # -- records ------------------------------------------------------------

    def record(self, path: str) -> Record | None:
        """What was recorded of the file at ``path`` when it was written; None if nothing was."""
        try:
            with self.open_read(record_path(path)) as f:
                return Record.from_json(f.read(64 * 1024))
        except NotFound:
            return None

    def _put_record(self, path: str, record: Record) -> None:
        with self._write(record_path(path)) as f:
            f.write(record.to_json())

    def verified_chunks(self, path: str) -> Iterator[bytes]:
        """The whole file at ``path`` in chunks, checked against its record.

        The last chunk is followed by :class:`~shoal.datastore.integrity.Corrupt`
        if what was read does not match the size and sha256 recorded.
        """
        record = self.record(path)
        hashing = Hashing()
        for chunk in self.chunks(path):
            hashing.write(chunk)
            yield chunk
        if record is not None:
            got = hashing.record(None)
            if got.size != record.size or not record.accepts(got.sha256):
                raise record.mismatch(path, got.sha256)

    def verify(self, path: str) -> Record | None:
        """Read the file at ``path`` through; its record (None: nothing to check against).

        :class:`~shoal.datastore.integrity.Corrupt` if it does not match.
        """
        for _ in self.verified_chunks(path):
            pass
        return self.record(path)

    # -- derived ------------------------------------------------------------

    def size(self, path: str) -> int:
        """The size in bytes of the file at ``path``; NotFound if there is none."""
        with self.open_read(path) as f:
            return f.seek(0, os.SEEK_END)

    def chunks(self, path: str, start: int = 0) -> Iterator[bytes]:
        """The file at ``path`` from byte ``start`` to its end, in chunks.

        The file is opened when the first chunk is asked for, and closed
        however the reading ends.
        """
        with self.open_read(path) as f:
            f.seek(start)
            while chunk := f.read(CHUNK):
                yield chunk

    def listing(self, prefix: str) -> list[str]:
        """The files under a folder that anyone may see: never outputs still staged."""
        return [f for f in self.files(prefix) if not f.startswith(STAGING + "/")]

    def info(self, path: str) -> FileInfo:
        """What is known of the file at ``path``; NotFound if there is none."""
        size = self.size(path)
        record = self.record(path)
        if record is None:
            return FileInfo(path, size, self._modified(path))
        return FileInfo(path, size, record.modified, record.sha256)

    def entries(self, prefix: str) -> list[FileInfo]:
        """:meth:`info` of every file :meth:`listing` shows under ``prefix``."""
        return [self.info(path) for path in self.listing(prefix)]

    def write_bytes(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path``."""
        with self.open_write(path) as f:
            f.write(data)

    def write_file(self, path: str, source: str | os.PathLike[str]) -> None:
        """Copy a local file into the datastore."""
        with self.open_write(path) as f, open(source, "rb") as src:
            shutil.copyfileobj(src, f, CHUNK)

    async def write_stream(
        self, path: str, chunks: AsyncIterable[bytes], idle_timeout: float | None = None
    ) -> int:
        """Store a file from an async stream of chunks; its size.

        A stream that sends nothing for ``idle_timeout`` seconds (a client
        frozen or gone without closing) is given up, and nothing is stored.
        """
        size = 0
        with self.open_write(path) as f:
            async for chunk in _within(chunks, idle_timeout):
                f.write(chunk)
                size += len(chunk)
        return size

    # -- outputs staged per attempt -----------------------------------------

    def promote(self, attempt_id: int, prefix: str, names: list[str]) -> list[str]:
        """Make an attempt's staged outputs the files under ``prefix``; the names missing.

        Each file is renamed into place (atomic per file). A name neither
        staged nor already in place (promoted by an earlier try of the same
        transaction) is returned, and the attempt cannot win with it.
        """
        staged = staging_prefix(attempt_id)
        missing = []
        for name in names:
            target = prefix + name
            check_path(target)
            if self.exists(staged + name):
                self.rename(staged + name, target)
            elif not self.exists(target):
                missing.append(name)
        return missing

    def discard_staged(self, attempt_ids: list[int]) -> None:
        """Remove what these attempts staged (they lost, failed or were promoted)."""
        for attempt_id in attempt_ids:
            # What cannot be removed now is swept again later (see the boss's housekeeping).
            with contextlib.suppress(DatastoreError):
                self.remove(staging_prefix(attempt_id))

    def staged_attempts(self) -> list[int]:
        """The attempts that have files staged."""
        found = {f.split("/")[1] for f in self.files(STAGING)}
        return sorted(int(a) for a in found if a.isdigit())


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

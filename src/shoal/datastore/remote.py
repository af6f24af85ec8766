"""A datastore on any fsspec filesystem: S3, GCS, Azure, SFTP, ...

Paths are kept under one root (``bucket/prefix`` or a folder on the host).

Writes are atomic, each the filesystem's way:

- an object store (S3, GCS, Azure) is written straight to the object's key:
  the upload (S3's multipart upload, GCS's resumable one, Azure's staged
  blocks) becomes an object only when it is completed as the block ends. A
  write that fails is aborted; one whose writer is killed is never completed,
  so nothing is ever seen at the key. A rename is a server-side copy (whole)
  and a delete.
- any other filesystem (SFTP, ...) is written to a temporary name beside the
  target (``.upload-*``, never listed) and renamed into place (SFTP's
  ``posix-rename``, which replaces in one step).

Integrity: each file's size and sha256 are recorded in the datastore itself,
under ``.integrity/<path>`` (see :mod:`~shoal.datastore.integrity`), so
``shoal data`` on the URL checks files without a boss. The boss streams: a
file is read and written a block (``BLOCK``) at a time, never whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import secrets
from collections.abc import AsyncIterable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

from shoal.datastore.base import Datastore, _within, check_path, shown
from shoal.datastore.layout import RECORDS
from shoal.exceptions import BadInput, DatastoreError, NotFound

__all__ = ["BLOCK", "RemoteDatastore", "open_remote"]

# How much of a file is held at once: one part of an upload (S3's smallest, so a
# 50 GB file at most in its 10,000 parts), one read ahead.
BLOCK = 5 * 1024 * 1024
# How much of an S3 download is read at once.
STREAMED = 1024 * 1024
# glibc's mallopt setting for the size from which a buffer is its own mapping.
_M_MMAP_THRESHOLD = -3
TEMPORARY = ".upload-"
OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl"}


def open_remote(location: str, kwargs: dict[str, object], shown_as: str) -> RemoteDatastore:
    """The datastore at an fsspec URL; BadInput if it cannot be opened or reached."""
    import fsspec.core

    _release_big_buffers()
    try:
        fs, root = fsspec.core.url_to_fs(location, **kwargs)
    except (ImportError, ValueError, TypeError, OSError) as e:
        raise BadInput(f"the datastore {shown_as} cannot be opened: {_reason(e)}") from e
    store = RemoteDatastore(fs, str(root), shown_as)
    store.check()
    return store


class RemoteDatastore(Datastore):
    """Files under ``root`` on an fsspec filesystem ``fs``; ``url`` names it in messages."""

    def __init__(self, fs: Any, root: str, url: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        protocols = fs.protocol if isinstance(fs.protocol, tuple | list) else (fs.protocol,)
        self.object_store = bool(OBJECT_STORES.intersection(protocols))

    def check(self) -> None:
        """Make sure the root can be reached (and exists: a folder is made, a bucket must be).

        BadInput if not: ``--data`` names nothing the boss can use.
        """
        try:
            if self.object_store:
                bucket = self.root.split("/", 1)[0]
                self.fs.ls(bucket, detail=False)
            else:
                self.fs.makedirs(self.root, exist_ok=True)
        except FileNotFoundError:
            raise BadInput(
                f"the datastore {self.url}: there is no bucket '{bucket}'; make it first"
            ) from None
        except Exception as e:  # any library's own error: the line it gives is the reason
            raise BadInput(f"the datastore {self.url} cannot be reached: {_reason(e)}") from e

    def full(self, path: str) -> str:
        """The filesystem's path of a datastore path."""
        return self.root + "/" + "/".join(check_path(path).parts)

    # -- primitives ---------------------------------------------------------

    def exists(self, path: str) -> bool:
        full = self.full(path)
        try:
            return bool(self.fs.isfile(full))
        except (OSError, ValueError) as e:
            raise self._unreachable(path, e) from e

    def open_read(self, path: str) -> BinaryIO:
        if not self.exists(path):
            raise NotFound(f"no file '{shown(path)}' in the datastore")
        try:
            return cast(BinaryIO, self.fs.open(self.full(path), "rb", block_size=BLOCK))
        except FileNotFoundError:
            raise NotFound(f"no file '{shown(path)}' in the datastore") from None
        except (OSError, ValueError) as e:
            raise self._unreachable(path, e) from e

    def size(self, path: str) -> int:
        try:
            return int(self.fs.size(self.full(path)))
        except FileNotFoundError:
            raise NotFound(f"no file '{shown(path)}' in the datastore") from None
        except (OSError, ValueError) as e:
            raise self._unreachable(path, e) from e

    def chunks(self, path: str, start: int = 0) -> Iterator[bytes]:
        if not hasattr(self.fs, "_call_s3"):
            yield from super().chunks(path, start)
            return
        # S3: one GET streamed from ``start`` to the end, rather than a ranged GET per block.
        from fsspec.asyn import sync

        if not self.exists(path):
            raise NotFound(f"no file '{shown(path)}' in the datastore")
        bucket, key, _ = self.fs.split_path(self.full(path))
        ranged = {"Range": f"bytes={start}-"} if start else {}
        try:
            answer = sync(
                self.fs.loop, self.fs._call_s3, "get_object", Bucket=bucket, Key=key, **ranged
            )
        except FileNotFoundError:
            raise NotFound(f"no file '{shown(path)}' in the datastore") from None
        body = answer["Body"]
        try:
            while chunk := sync(self.fs.loop, body.read, STREAMED):
                yield chunk
        finally:
            body.close()

    @contextmanager
    def _write(self, path: str) -> Iterator[BinaryIO]:
        full = self.full(path)
        self._check_parents(path)
        if self.object_store:
            yield from self._write_object(path, full)
        else:
            yield from self._write_renamed(path, full)

    def _write_object(self, path: str, full: str) -> Iterator[BinaryIO]:
        try:
            f = self.fs.open(full, "wb", block_size=BLOCK)
        except (OSError, ValueError) as e:
            raise self._unwritable(path, e) from e
        try:
            yield cast(BinaryIO, f)
        except BaseException:
            # Never completed, so never an object: an aborted upload leaves nothing.
            with contextlib.suppress(Exception):
                f.discard()
            f.closed = True
            raise
        try:
            f.close()
        except (OSError, ValueError) as e:
            f.closed = True
            raise self._unwritable(path, e) from e

    def _write_renamed(self, path: str, full: str) -> Iterator[BinaryIO]:
        parent = full.rsplit("/", 1)[0]
        tmp = f"{parent}/{TEMPORARY}{secrets.token_hex(8)}"
        try:
            self.fs.makedirs(parent, exist_ok=True)
            f = self.fs.open(tmp, "wb", block_size=BLOCK)
        except (OSError, ValueError) as e:
            raise self._unwritable(path, e) from e
        try:
            with f:
                yield cast(BinaryIO, f)
            self.fs.mv(tmp, full)
        except BaseException as e:
            with contextlib.suppress(Exception):
                self.fs.rm_file(tmp)
            if isinstance(e, (OSError, ValueError)):
                raise self._unwritable(path, e) from e
            raise

    def _files(self, prefix: str) -> list[str]:
        base = self.full(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            found = self.fs.find(base, withdirs=False)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise self._unreachable(prefix or ".", e) from e
        start = self.root + "/"
        files = []
        for name in found:
            name = str(name)
            if not name.startswith(base + "/") or name.rsplit("/", 1)[-1].startswith(TEMPORARY):
                continue
            files.append(name[len(start) :])
        return sorted(files)

    def _remove(self, path: str) -> None:
        full = self.full(path)
        try:
            if self.fs.isfile(full):
                self.fs.rm_file(full)
            elif self.fs.isdir(full):
                self.fs.rm(full, recursive=True)
            else:
                return
            gone = not self.fs.exists(full)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as e:
            raise DatastoreError(
                f"the boss cannot remove '{shown(path)}' from its datastore: {_reason(e)}"
            ) from e
        if not gone:
            raise DatastoreError(f"the boss cannot remove '{shown(path)}' from its datastore")

    def _move(self, source: str, target: str) -> None:
        full_source, full_target = self.full(source), self.full(target)
        self._check_parents(target)
        try:
            if not self.object_store:
                self.fs.makedirs(full_target.rsplit("/", 1)[0], exist_ok=True)
            # An object store copies on the server (the copy appears whole), then deletes.
            self.fs.mv(full_source, full_target)
        except (OSError, ValueError) as e:
            raise self._unwritable(target, e) from e

    def _modified(self, path: str) -> float | None:
        try:
            return float(self.fs.modified(self.full(path)).timestamp())
        except (OSError, ValueError, NotImplementedError, AttributeError):
            return None

    async def write_stream(
        self, path: str, chunks: AsyncIterable[bytes], idle_timeout: float | None = None
    ) -> int:
        # Each block goes out from a thread: a part's upload must not hold up the boss's loop.
        size = 0
        pending: list[bytes] = []
        held = 0
        writing = self.open_write(path)
        f = await asyncio.to_thread(writing.__enter__)
        try:
            async for chunk in _within(chunks, idle_timeout):
                pending.append(chunk)
                held += len(chunk)
                size += len(chunk)
                if held >= 1024 * 1024:
                    await asyncio.to_thread(f.write, b"".join(pending))
                    pending, held = [], 0
            if pending:
                await asyncio.to_thread(f.write, b"".join(pending))
        except BaseException as e:
            await asyncio.to_thread(writing.__exit__, type(e), e, e.__traceback__)
            raise
        await asyncio.to_thread(writing.__exit__, None, None, None)
        return size

    # -- helpers ------------------------------------------------------------

    def _check_parents(self, path: str) -> None:
        """DatastoreError if a folder of ``path`` is a file (an object store would not say)."""
        if not self.object_store or path.startswith(RECORDS + "/"):
            return  # a record's folders mirror its file's, looked at already
        parts = check_path(path).parts
        for n in range(1, len(parts)):
            if self.exists("/".join(parts[:n])):
                raise DatastoreError(
                    f"the boss cannot write '{shown(path)}' in its datastore: "
                    f"'{shown('/'.join(parts[:n]))}' is a file"
                )

    def _unwritable(self, path: str, e: BaseException) -> DatastoreError:
        return DatastoreError(
            f"the boss cannot write '{shown(path)}' in its datastore {self.url}: {_reason(e)}"
        )

    def _unreachable(self, path: str, e: BaseException) -> DatastoreError:
        return DatastoreError(
            f"the datastore {self.url} cannot be read at '{shown(path)}': {_reason(e)}"
        )


def _release_big_buffers() -> None:
    """Make freed buffers of a megabyte or more go back to the system at once (glibc).

    The libraries copy each block a few times, from several threads; glibc
    would keep those copies in its per-thread heaps once they are freed, and
    the boss would grow by tens of megabytes for every big file it streams.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to set
        return
    mallopt(_M_MMAP_THRESHOLD, 1024 * 1024)


def _reason(e: BaseException) -> str:
    """An exception's message in one line."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."

"""The datastore the boss serves by default: a local folder.

Writes go to a temporary file beside the target first (``.upload-*``, never
listed) and are renamed into place, so a reader never sees half a file and a
failed upload leaves nothing behind. Each file's record of size and sha256
is a file of its own under ``.integrity/`` (see :mod:`~shoal.datastore.integrity`),
written and renamed the same way.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from shoal.datastore.base import Datastore, check_path, shown
from shoal.datastore.layout import STAGING
from shoal.exceptions import DatastoreError, NotFound

__all__ = ["LocalDatastore"]

TEMPORARY = ".upload-"


class LocalDatastore(Datastore):
    """Files under one folder, addressed by relative POSIX paths."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def resolve(self, path: str) -> Path:
        """The file behind a datastore path; refuses paths that leave the root."""
        return self.root.joinpath(*check_path(path).parts)

    def exists(self, path: str) -> bool:
        return self.resolve(path).is_file()

    def open_read(self, path: str) -> BinaryIO:
        target = self.resolve(path)
        try:
            if target.is_file():
                return target.open("rb")
        except FileNotFoundError:
            pass  # removed between the look and the open
        raise NotFound(f"no file '{path}' in the datastore")

    @contextmanager
    def _write(self, path: str) -> Iterator[BinaryIO]:
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

    def _files(self, prefix: str) -> list[str]:
        base = self.resolve(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return []
        found = []
        for f in base.rglob("*"):
            if f.name.startswith(TEMPORARY) or not f.is_file():
                continue
            found.append(str(PurePosixPath(*f.relative_to(self.root).parts)))
        return sorted(found)

    def _remove(self, path: str) -> None:
        target = self.resolve(path)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                target.unlink(missing_ok=True)
            except OSError as e:
                raise _unwritable(path, e) from e
        if target.exists():
            raise DatastoreError(f"the boss cannot remove '{shown(path)}' from its datastore")

    def _move(self, source: str, target: str) -> None:
        source_file, target_file = self.resolve(source), self.resolve(target)
        try:
            target_file.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source_file, target_file)
        except OSError as e:
            raise _unwritable(target, e) from e

    def _modified(self, path: str) -> float | None:
        try:
            return self.resolve(path).stat().st_mtime
        except OSError:
            return None

    def staged_attempts(self) -> list[int]:
        # Every attempt's folder, even one holding only an upload cut off halfway.
        folder = self.root / STAGING
        if not folder.is_dir():
            return []
        return [int(d.name) for d in folder.iterdir() if d.name.isdigit()]


def _unwritable(path: str, e: OSError) -> DatastoreError:
    return DatastoreError(
        f"the boss cannot write '{shown(path)}' in its datastore: {e.strerror or e}"
    )

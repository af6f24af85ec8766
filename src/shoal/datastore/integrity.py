"""What a datastore records of each file it writes, and how a read is checked against it.

Every file written through :meth:`~shoal.datastore.base.Datastore.open_write`
gets a record beside the tree, in the same datastore: ``.integrity/<path>``,
a small JSON document ``{"size", "sha256", "modified", "previous"}``. It lives
in the datastore itself (not in the boss's database), so ``shoal data`` on a
datastore URL with no boss checks files the same way the boss does.

The record is written just before the file is put in place, so the record of
a path is never older than its file. ``previous`` keeps the sha256 the record
replaced: if the writer stops (or a reader looks) between the record and the
file, the file still holds the previous content, which is intact, not corrupt.

A read is checked by hashing what was read: :func:`accepts` says whether a
digest matches the record. The boss sends the digests it accepts with a
download (the ``X-Shoal-Sha256`` header, comma-separated), and the worker
agent checks what it wrote against them (``shoal.agent.client``).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, BinaryIO

from shoal.datastore.layout import DIGEST_HEADER, RECORDS, origin
from shoal.exceptions import Corrupt

__all__ = ["DIGEST_HEADER", "Corrupt", "Hashing", "Record", "record_path"]


def record_path(path: str) -> str:
    """Where the record of the file at ``path`` lives."""
    return f"{RECORDS}/{path}"


@dataclass(frozen=True)
class Record:
    """The size and sha256 of a file when it was written, and when that was."""

    size: int
    sha256: str
    modified: float
    previous: str | None = None

    def digests(self) -> list[str]:
        """The digests a read may have: this write's, then the one it replaced."""
        return [self.sha256] + ([self.previous] if self.previous else [])

    def accepts(self, sha256: str) -> bool:
        return sha256 in self.digests()

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "size": self.size,
                "sha256": self.sha256,
                "modified": self.modified,
                "previous": self.previous,
            }
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Record | None:
        """The record in ``data``; None for one that cannot be read (then nothing is checked)."""
        try:
            doc: Any = json.loads(data)
            return cls(
                size=int(doc["size"]),
                sha256=str(doc["sha256"]),
                modified=float(doc["modified"]),
                previous=str(doc["previous"]) if doc.get("previous") else None,
            )
        except (ValueError, TypeError, KeyError):
            return None

    def mismatch(self, path: str, sha256: str) -> Corrupt:
        """The error for a read of ``path`` that hashed to ``sha256``."""
        return Corrupt(
            f"'{path}' ({origin(path)}) is corrupt: it reads with sha256 {sha256[:16]}, "
            f"the datastore recorded {self.sha256[:16]} when it was written"
        )


class Hashing:
    """A file being written (or nothing), passed through: counts the bytes and hashes them."""

    def __init__(self, raw: BinaryIO | None = None) -> None:
        self.raw = raw
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self.raw.write(data) if self.raw is not None else len(data)

    def flush(self) -> None:
        if self.raw is not None:
            self.raw.flush()

    def writable(self) -> bool:
        return True

    def record(self, previous: Record | None) -> Record:
        """The record of what was written, replacing ``previous``."""
        return Record(
            size=self.size,
            sha256=self._hash.hexdigest(),
            modified=time.time(),
            previous=previous.sha256 if previous is not None else None,
        )

"""The command line's access to a datastore: through a running boss, or straight on it.

:class:`DataAccess` is what ``shoal data`` and ``shoal results --outputs``
ask of a datastore; :class:`BossData` goes through a boss's HTTP API
(``/v1/data``), :class:`DirectData` opens the datastore itself (a folder, or
a URL, with no boss). Files move in chunks both ways, never whole in memory,
and a download lands at its local path only once it is complete.
"""

from __future__ import annotations

import contextlib
import http.client
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from shoal import protocol as p
from shoal.agent.client import CHUNK
from shoal.client.boss import BossClient
from shoal.datastore.base import Datastore, FileInfo, check_path, shown
from shoal.datastore.layout import STAGING
from shoal.exceptions import BadInput, BossUnreachable, NotFound

__all__ = ["BossData", "DataAccess", "DirectData", "Progress", "nearby"]

# Called with the bytes moved since the last call.
Progress = Callable[[int], None]


def _nothing(n: int) -> None:
    pass


class DataAccess(ABC):
    """A datastore seen from the command line."""

    where: str  # the boss's URL, or the datastore's location

    @abstractmethod
    def entries(self, prefix: str) -> list[FileInfo]:
        """The files under the folder ``prefix`` ("": all), or the one file ``prefix`` names."""

    @abstractmethod
    def chunks(self, path: str) -> Iterator[bytes]:
        """The file at ``path``, in chunks; NotFound if there is none."""

    @abstractmethod
    def upload(self, source: Path, path: str, progress: Progress = _nothing) -> None:
        """Store the local file ``source`` at ``path``, streamed."""

    @abstractmethod
    def remove(self, path: str) -> tuple[int, int]:
        """Remove the file or folder at ``path``; the files and bytes removed."""

    def close(self) -> None:  # noqa: B027  (most accesses hold nothing to let go of)
        """Let go of the connection or files held."""

    def download(self, path: str, dest: Path, progress: Progress = _nothing) -> int:
        """Copy the file at ``path`` to ``dest`` (whole or not at all); its size."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        size = 0
        try:
            with tmp.open("wb") as f:
                for chunk in self.chunks(path):
                    f.write(chunk)
                    size += len(chunk)
                    progress(len(chunk))
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return size


class BossData(DataAccess):
    """The datastore of a running boss, through its HTTP API (the boss's token)."""

    def __init__(self, client: BossClient) -> None:
        self.client = client
        self.where = client.url

    def close(self) -> None:
        self.client.close()

    def entries(self, prefix: str) -> list[FileInfo]:
        rows = self.client.get("/data", prefix=prefix, detail=1)
        return [
            FileInfo(str(r["path"]), int(r["size"]), r.get("modified"), r.get("sha256"))
            for r in rows
        ]

    def chunks(self, path: str) -> Iterator[bytes]:
        with self.client._answers():
            resp = self.client.http.stream("/data/" + quote(path))
        return self.client._chunks(resp)

    def upload(self, source: Path, path: str, progress: Progress = _nothing) -> None:
        http = self.client.http
        size = source.stat().st_size
        with self.client._answers(), source.open("rb") as f:
            resp = http._send(
                "PUT",
                p.API_PREFIX + "/data/" + quote(path),
                body=_Reading(f, progress),
                headers={
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                },
            )
            http._check(resp)

    def remove(self, path: str) -> tuple[int, int]:
        answer = self.client._call("DELETE", "/data/" + quote(path))
        return int(answer["files"]), int(answer["bytes"])

    def gc(self, older_than: float, dry_run: bool) -> dict[str, object]:
        """Ask the boss to collect (``POST /v1/gc``); its plan as a dict."""
        result: dict[str, object] = self.client.post(
            "/gc", {"older_than": older_than, "dry_run": dry_run}
        )
        return result


class _Reading:
    """A local file as a request body that says how far the upload got.

    http.client reads a body in blocks of its own size; a block of ours is
    larger, so a fast upload is not slowed by one callback per 8 KiB.
    """

    def __init__(self, f: BinaryIO, progress: Progress) -> None:
        self.f = f
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(max(n, CHUNK))
        self.progress(len(data))
        return data


class DirectData(DataAccess):
    """A datastore opened here, with no boss (a folder, or a URL)."""

    def __init__(self, datastore: Datastore, where: str) -> None:
        self.datastore = datastore
        self.where = where

    def entries(self, prefix: str) -> list[FileInfo]:
        found = self.datastore.entries(prefix)
        if not found and prefix.strip("/") and not prefix.startswith(STAGING):
            with contextlib.suppress(NotFound):
                if self.datastore.exists(prefix):
                    found = [self.datastore.info(prefix)]
        return found

    def chunks(self, path: str) -> Iterator[bytes]:
        self.datastore.size(path)  # NotFound now, not at the first chunk
        return self.datastore.chunks(path)

    def upload(self, source: Path, path: str, progress: Progress = _nothing) -> None:
        check_path(path)
        with self.datastore.open_write(path) as out, source.open("rb") as f:
            while chunk := f.read(CHUNK):
                out.write(chunk)
                progress(len(chunk))

    def remove(self, path: str) -> tuple[int, int]:
        found = self.entries(path)
        if not found:
            raise NotFound(f"no file or folder '{shown(path)}' in the datastore")
        self.datastore.remove(path)
        return len(found), sum(f.size for f in found)


def nearby(access: DataAccess, path: str) -> str:
    """What the datastore holds near a path that is not there, for a one-line message."""
    parts = path.strip("/").split("/")
    for depth in range(len(parts) - 1, -1, -1):
        folder = "/".join(parts[:depth])
        try:
            found = access.entries(folder)
        except (BadInput, NotFound, BossUnreachable, http.client.HTTPException):
            continue
        if not found:
            continue
        cut = len(folder) + 1 if folder else 0
        names = sorted({_first(f.path[cut:]) for f in found})
        shown_names = ", ".join(names[:10]) + (
            f" and {len(names) - 10} more" if len(names) > 10 else ""
        )
        return (
            f"'{folder}/' holds {shown_names}" if folder else f"the datastore holds {shown_names}"
        )
    return "the datastore is empty"


def _first(rest: str) -> str:
    head, sep, _ = rest.partition("/")
    return head + sep

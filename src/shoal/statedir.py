"""The state folder (``.shoal/`` by default): database, datastore, boss address and token.

It holds the boss's token and everything its tasks printed, so it is private:
the folder is made mode 0700 and every file shoal writes in it 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["StateDir", "open_private", "write_private"]

# SQLite's own files beside a database: they take the database file's mode.
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600), atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def open_private(path: Path) -> BinaryIO:
    """A log file to append to, made 0600 if it is new."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


@dataclass(frozen=True)
class StateDir:
    """Where a boss keeps everything a restart must find again."""

    root: Path

    def create(self) -> None:
        """Make the folder (0700), and tighten one an older shoal left readable."""
        fresh = not self.root.exists()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = (self.token_file, self.db_path, self.certs)  # `shoal certs init` may come first
        if not fresh and not any(path.exists() for path in made):
            return  # a folder shoal did not make: leave its mode alone
        os.chmod(self.root, 0o700)
        for suffix in _SQLITE_SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.db_path}{suffix}", 0o600)
        for path in (self.token_file, self.boss_file, self.db_file):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, 0o600)

    @property
    def db_path(self) -> Path:
        return self.root / "shoal.db"

    @property
    def db_file(self) -> Path:
        """Names the database when it is not the folder's own SQLite file."""
        return self.root / "database"

    def database(self, given: str | None = None) -> str:
        """The database to use: ``given``, the one last remembered, or shoal.db."""
        if given:
            return given
        if self.db_file.exists():
            return self.db_file.read_text().strip()
        return str(self.db_path)

    def remember_database(self, given: str | None) -> None:
        """Remember the database given, once it opened.

        So that commands run later in this folder (``shoal status`` with no
        boss running, say) read the same database; one that could not be
        opened (a mistyped URL) is not remembered in place of the last.
        """
        if not given:
            return
        if given != str(self.db_path):
            write_private(self.db_file, given + "\n")
        elif self.db_file.exists():
            self.db_file.unlink()

    def has_database(self) -> bool:
        return self.db_file.exists() or self.db_path.exists()

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def datastore_file(self) -> Path:
        """Names the datastore (and its options) when it is not the folder's own ``data``."""
        return self.root / "datastore.json"

    def datastore(self) -> tuple[str, dict[str, str]]:
        """Where the datastore is (a folder or a URL) and its options: the last given, or data/.

        Remembered so that commands run later in this folder (``shoal logs``
        with no boss running, say) read the same datastore.
        """
        try:
            doc = json.loads(self.datastore_file.read_text())
            options = doc.get("options") or {}
            return str(doc["location"]), {str(k): str(v) for k, v in options.items()}
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            return str(self.data), {}

    def remember_datastore(self, location: str, options: dict[str, str]) -> None:
        """Keep the datastore a boss of this folder uses (no secret is ever among its options)."""
        if location == str(self.data) and not options:
            self.datastore_file.unlink(missing_ok=True)
            return
        write_private(
            self.datastore_file, json.dumps({"location": location, "options": options}) + "\n"
        )

    @property
    def work(self) -> Path:
        """Workspaces and caches of the local workers."""
        return self.root / "work"

    @property
    def certs(self) -> Path:
        """The certificate authority and what it issued (``shoal certs``)."""
        return self.root / "certs"

    @property
    def boss_file(self) -> Path:
        return self.root / "boss.json"

    @property
    def token_file(self) -> Path:
        return self.root / "token"

    def token(self) -> str:
        """The boss's token, made on first use and kept (mode 0600)."""
        try:
            text = self.token_file.read_text().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        token = secrets.token_hex(24)  # hex: never mistaken for an option
        write_private(self.token_file, token + "\n")
        return token

    def write_boss(self, url: str, token: str) -> None:
        write_private(
            self.boss_file, json.dumps({"url": url, "token": token, "pid": os.getpid()}) + "\n"
        )

    def read_boss(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.boss_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_boss(self) -> None:
        info = self.read_boss()
        if info is not None and info.get("pid") == os.getpid():
            self.boss_file.unlink(missing_ok=True)

    def live_boss(self) -> dict[str, Any] | None:
        """The running boss recorded here, if its process is still alive."""
        info = self.read_boss()
        if info is None:
            return None
        pid = info.get("pid")
        if not isinstance(pid, int):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return info

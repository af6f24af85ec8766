"""What the command line asks of runs, whether a boss answers or the state folder's database."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["Client"]


class Client(ABC):
    """The views of runs, tasks, logs and workers, and the changes a user may ask for.

    ``ref`` names a run: its id, its name (its latest run), or None for the
    latest run of all.
    """

    url: str  # where the answers come from: the boss's URL, or the state folder

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def run(self, ref: str | int | None) -> dict[str, Any]: ...

    @abstractmethod
    def runs(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def tasks(
        self, ref: str | int | None, states: Sequence[str] | None = None
    ) -> list[dict[str, Any]]: ...

    @abstractmethod
    def task(self, ref: str | int | None, name: str) -> dict[str, Any]: ...

    @abstractmethod
    def log_chunks(
        self,
        ref: str | int | None,
        name: str,
        attempt: int | None = None,
        tail: int | None = None,
    ) -> Iterator[bytes]:
        """A task's log (of attempt number ``attempt``; its last ``tail`` lines) in chunks."""

    def log(
        self,
        ref: str | int | None,
        name: str,
        attempt: int | None = None,
        tail: int | None = None,
    ) -> str:
        """A task's log (its last ``tail`` lines), as text."""
        return b"".join(self.log_chunks(ref, name, attempt, tail)).decode("utf-8", "replace")

    @abstractmethod
    def results(self, ref: str | int | None) -> dict[str, Any]: ...

    @abstractmethod
    def workers(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def events(self, ref: str | int | None) -> list[dict[str, Any]]: ...

    @abstractmethod
    def bosses(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def machines(self) -> list[dict[str, Any]]:
        """The machines shoal started, as the database records them."""

    @abstractmethod
    def cancel(self, ref: str | int) -> int: ...

    @abstractmethod
    def retry(self, ref: str | int) -> int: ...

    @abstractmethod
    def cancel_task(self, ref: str | int, name: str) -> int:
        """Cancel one unfinished task; how many tasks that ended (it and what runs after it)."""

    @abstractmethod
    def retry_task(self, ref: str | int, name: str) -> int:
        """Run one failed or cancelled task again; how many tasks will run."""

    @abstractmethod
    def order_worker(self, worker: str, order: str) -> dict[str, Any]:
        """Ask a connected worker (id or name) to ``drain`` or ``stop``."""

"""Reading a stored log: an attempt's, from an offset or its last lines, in chunks.

The boss serves logs with these and ``shoal logs`` reads them offline with
them, so a log is never held in memory whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from shoal.datastore.base import Datastore
from shoal.datastore.layout import log_path
from shoal.exceptions import NotFound

__all__ = ["StoredLog", "attempt_log_path", "read_log", "start_of", "tail_start"]

_BLOCK = 64 * 1024


@dataclass
class StoredLog:
    """The part of a stored log asked for: where it starts, the log's size, its bytes."""

    start: int
    size: int
    chunks: Iterator[bytes]


def attempt_log_path(
    run_id: int, task: dict[str, Any], number: int | None
) -> tuple[dict[str, Any], str]:
    """The attempt of a task's view whose log is asked for, and where its log is.

    The latest attempt, or the one numbered ``number``; NotFound if there is none.
    """
    attempts = task["attempt_list"]
    if number:
        attempts = [a for a in attempts if a["number"] == number]
    if not attempts:
        which = f"attempt {number}" if number else "attempt yet"
        raise NotFound(f"task '{task['name']}' has no {which}")
    last: dict[str, Any] = attempts[-1]
    return last, last["log"] or log_path(run_id, task["name"], last["id"])


def read_log(
    datastore: Datastore, path: str, tail: int | None = None, offset: int = 0
) -> StoredLog | None:
    """The log at ``path`` from ``offset``, or its last ``tail`` lines; None if there is none (yet)."""
    if not datastore.exists(path):
        return None
    try:
        with datastore.open_read(path) as f:
            start, size = start_of(f, tail)
    except NotFound:
        return None  # gone between the look and the open
    if tail is None:
        start = min(offset, size)
    return StoredLog(start, size, datastore.chunks(path, start))


def tail_start(f: BinaryIO, lines: int, size: int) -> int:
    """Where the last ``lines`` lines of a file of ``size`` bytes begin.

    Read backwards a block at a time. A last line without a newline counts;
    the newline that ends the file does not start another line.
    """
    if lines <= 0 or size <= 0:
        return size
    f.seek(size - 1)
    end = size - 1 if f.read(1) == b"\n" else size
    found = 0
    pos = end
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        i = len(block)
        while True:
            i = block.rfind(b"\n", 0, i)
            if i < 0:
                break
            found += 1
            if found == lines:
                return pos + i + 1
    return 0


def start_of(f: BinaryIO, tail: int | None) -> tuple[int, int]:
    """Where the last ``tail`` lines of an open file begin (0 for all of it), and its size."""
    size = f.seek(0, os.SEEK_END)
    return (tail_start(f, tail, size) if tail is not None else 0), size

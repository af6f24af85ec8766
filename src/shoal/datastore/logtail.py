"""Reading a stored log: its last lines, and the rest of it in chunks.

The boss serves logs with these and ``shoal logs`` reads them offline with
them, so a log is never held in memory whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["read_from", "start_of", "tail_start"]

CHUNK = 256 * 1024
_BLOCK = 64 * 1024


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


def read_from(path: Path, start: int) -> Iterator[bytes]:
    """The file from ``start`` to its end, in chunks (opened once the first is asked for)."""
    with path.open("rb") as f:
        f.seek(start)
        while chunk := f.read(CHUNK):
            yield chunk


def start_of(path: Path, tail: int | None) -> tuple[int, int]:
    """Where the last ``tail`` lines of a file begin (0 for all of it), and its size."""
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        return (tail_start(f, tail, size) if tail is not None else 0), size

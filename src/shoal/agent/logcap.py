"""An attempt's log, kept within a cap: its head and its tail, and a note of what was cut.

Standard library only. A task may print far more than anyone will read; what
matters is how it began and how it ended. Up to half the cap goes to the
log file as it comes (up to the last whole line that fits). Past it, output
goes round a tail file the size of the rest of the cap (a ring: each byte at
its offset modulo the ring's size), so neither memory nor disk ever holds
more than the cap, and a log within the cap is kept whole. When the attempt ends,
:meth:`CappedLog.finish` appends the tail to the head, after a line saying
how much was cut from the middle.

A log under half the cap costs what a plain file does: one ``write`` a chunk.
"""

from __future__ import annotations

import os
import re
from typing import Iterator, List, Optional, Tuple

DEFAULT_LOG_CAP = 8 * 1024 * 1024
# Smaller caps would leave too little of either end to read.
MIN_LOG_CAP = 1024
# How far the tail's start looks for a line's start.
_ALIGN = 64 * 1024
_READ = 1024 * 1024
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from ``8M``, ``512KiB``, ``1.5G`` or ``1048576`` (K, M, G: powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"'{text}' is not a size: give bytes, or a number with K, M or G (8M)")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def log_cap(text: str) -> int:
    """A log cap from its text; ValueError with a clear line if it is not a usable one."""
    cap = parse_size(text)
    if cap < MIN_LOG_CAP:
        raise ValueError(f"a log cap of {text} is too small: give at least {MIN_LOG_CAP} bytes")
    return cap


def human_size(n: int) -> str:
    """``469.3 MiB``: a size for people."""
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def cut_note(cut_bytes: int, cut_lines: int) -> bytes:
    """The line that stands for the middle of a log that was cut."""
    return (
        f"[... shoal cut {human_size(cut_bytes)} ({cut_lines:,} lines) "
        "from the middle of this log ...]\n"
    ).encode()


def _write_all(fd: int, data: bytes, offset: Optional[int] = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


class CappedLog:
    """An attempt's log file that never holds more than ``cap`` bytes (plus the note).

    It stands in for the log's file object: ``write``, ``fileno``, ``name``.
    """

    def __init__(self, path: str, cap: int = DEFAULT_LOG_CAP) -> None:
        self.path = path
        self.name = path
        self.cap = max(2, cap)
        self.head_cap = self.cap // 2
        self.ring_cap = self.cap - self.head_cap
        # 0600: a log holds whatever the task printed, its secrets included.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.size = 0  # bytes in the head, the log file, so far
        self.pushed = 0  # the size last sent to the boss while the attempt ran
        self._head_closed = False
        self._ends_line = True  # whether the head ends with a whole line
        self._ring: Optional[int] = None
        self.overflow = 0  # bytes past the head
        self._overflow_lines = 0
        self.cut = 0  # bytes cut from the middle, once finished

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes) -> int:
        """Take what the attempt printed."""
        if not self._head_closed and self.size + len(data) <= self.head_cap:
            _write_all(self._fd, data)
            self.size += len(data)
            self._ends_line = data.endswith(b"\n")
            return len(data)
        rest = data
        if not self._head_closed:
            # The head ends at a line's end where it can, so the note starts a line.
            room = self.head_cap - self.size
            end = data.rfind(b"\n", 0, room) + 1
            if not end and (not self.size or not self._ends_line):
                end = room  # a line longer than the head: cut it
            if end:
                _write_all(self._fd, data[:end])
                self.size += end
                self._ends_line = data[end - 1 : end] == b"\n"
            rest = data[end:]
            self._head_closed = True
            # What the head left of the cap is the tail's: a log within the cap is whole.
            self.ring_cap = self.cap - self.size
        self._to_ring(rest)
        return len(data)

    def _to_ring(self, data: bytes) -> None:
        if self._ring is None:
            self._ring = os.open(self.path + ".tail", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self._overflow_lines += data.count(b"\n")
        start = self.overflow
        self.overflow += len(data)
        if len(data) > self.ring_cap:
            start += len(data) - self.ring_cap
            data = data[len(data) - self.ring_cap :]
        pos = start % self.ring_cap
        first = min(len(data), self.ring_cap - pos)
        _write_all(self._ring, data[:first], pos)
        if first < len(data):
            _write_all(self._ring, data[first:], 0)

    def finish(self) -> None:
        """Close the log: its head, a note of what was cut if anything was, its tail."""
        if self._fd < 0:
            return
        try:
            if self._ring is not None:
                self._append_tail(self._ring)
        finally:
            os.close(self._fd)
            self._fd = -1
            if self._ring is not None:
                os.close(self._ring)
                self._ring = None
                os.unlink(self.path + ".tail")

    def _tail_spans(self) -> List[Tuple[int, int]]:
        """Where the kept tail lies in the ring, oldest byte first: (offset, length) pairs."""
        kept = min(self.overflow, self.ring_cap)
        begin = (self.overflow - kept) % self.ring_cap
        first = min(kept, self.ring_cap - begin)
        return [(begin, first), (0, kept - first)]

    def _append_tail(self, ring: int) -> None:
        skip = 0
        if self.overflow > self.ring_cap:
            # The oldest line kept lost its start: the tail begins with the next line.
            start = b"".join(_read(ring, self._tail_spans(), _ALIGN))
            skip = start.find(b"\n") + 1
            self.cut = self.overflow - self.ring_cap + skip
            kept_lines = sum(c.count(b"\n") for c in _read(ring, self._tail_spans(), skip=skip))
            note = cut_note(self.cut, self._overflow_lines - kept_lines)
            if not self._ends_line:
                note = b"\n" + note  # the head's last line was too long to end in it
            _write_all(self._fd, note)
        for chunk in _read(ring, self._tail_spans(), skip=skip):
            _write_all(self._fd, chunk)

    def __enter__(self) -> CappedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


def _read(
    fd: int, spans: List[Tuple[int, int]], limit: Optional[int] = None, skip: int = 0
) -> Iterator[bytes]:
    """The bytes of a file's spans in order, in chunks: the first ``limit``, after ``skip``."""
    left = limit
    for offset, length in spans:
        end = offset + length
        offset += min(skip, length)
        skip -= min(skip, length)
        while offset < end and (left is None or left > 0):
            size = min(_READ, end - offset, left if left is not None else _READ)
            chunk = os.pread(fd, size, offset)
            if not chunk:
                return
            offset += len(chunk)
            if left is not None:
                left -= len(chunk)
            yield chunk

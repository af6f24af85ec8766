"""The checks of single fields, shared by task files, defaults and inventories.

Each takes the value, where it stands (key, line, task) and a ``fail`` that
makes the :class:`~shoal.exceptions.SpecError` for the file being read, and
returns the value in the form the model holds.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from shoal.spec import bounds
from shoal.spec.bounds import MAX_NAME, shown
from shoal.spec.bundle import ARCHIVE_SUFFIXES, is_archive
from shoal.spec.lines import line_of

__all__ = [
    "bundle_path",
    "commands",
    "commands_text",
    "env",
    "parse_duration",
    "paths",
    "suggest",
    "whole_number",
]

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_duration(value: Any, *, zero: bool = False) -> float:
    """Seconds from ``90``, ``1.5``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1h30m"``.

    More than zero, or, with ``zero``, zero or more (a delay may be none;
    a timeout may not). Raises ValueError with a message fit for the user.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, str) and len(value) > 100:
        raise ValueError(f"bad duration {shown(value)}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _DURATION_RE.finditer(text):
                if text[pos : m.start()].strip():
                    break
                seconds += float(m.group(1)) * _UNITS[m.group(2)]
                pos = m.end()
            else:
                if pos and not text[pos:].strip():
                    return _positive(seconds, value, zero)
            raise ValueError(
                f"bad duration {shown(value)} (use seconds or a number with s, m, h, "
                "e.g. 90s, 30m, 2h)"
            ) from None
    else:
        raise ValueError(f"bad duration {shown(value)} (use seconds or e.g. 90s, 30m, 2h)")
    return _positive(seconds, value, zero)


def _positive(seconds: float, value: Any, zero: bool) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {shown(value)}: it must be a finite number of seconds")
    if seconds < 0 and zero:
        raise ValueError(f"bad duration {shown(value)}: it must be zero or more")
    if seconds <= 0 and not zero:
        raise ValueError(f"bad duration {shown(value)}: it must be more than zero")
    if seconds > bounds.MAX_SECONDS:
        raise ValueError(
            f"bad duration {shown(value)}: the most is {bounds.MAX_SECONDS / 86400:.0f} days"
        )
    return seconds


def suggest(word: str, known: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for a misspelt field, else the fields there are."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known fields: {', '.join(known)})"


def commands(
    value: Any, key: str, line: int | None, task: str | None, fail: bounds.Fail
) -> tuple[str, ...]:
    """A command or a list of commands, blank ones left out."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value.strip() else ()
    if isinstance(value, list):
        for i, v in enumerate(value):
            if not isinstance(v, str):
                # A number is no command: YAML read something meant otherwise.
                what = "empty" if v is None else shown(v)
                if isinstance(v, bool):
                    what = str(v).lower()
                elif isinstance(v, (int, float)):
                    what = f"the number {shown(v)}"
                raise fail(
                    f"'{key}' entry {i + 1} is {what}, not a command (quote it if it is one)",
                    line,
                    task,
                )
        return tuple(v for v in value if v.strip())
    raise fail(f"'{key}' must be a command or a list of commands", line, task)


def commands_text(
    value: Any, key: str, line: int | None, task: str | None, fail: bounds.Fail
) -> str | None:
    """Commands as one script, a line each (the run's ``setup``)."""
    cmds = commands(value, key, line, task, fail)
    return "\n".join(cmds) if cmds else None


def paths(value: Any, key: str, line: int | None, task: str, fail: bounds.Fail) -> tuple[str, ...]:
    """Relative paths inside the workspace (``inputs``, ``outputs``)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise fail(f"'{key}' must be a path or a list of paths", line, task)
    for v in value:
        if len(v) > bounds.MAX_PATH:
            raise fail(
                f"'{key}' has a path of {len(v):,} characters; the most is {bounds.MAX_PATH}",
                line,
                task,
            )
        if v.startswith("/") or ".." in Path(v).parts:
            raise fail(
                f"'{key}' entry '{v}' must be a relative path inside the workspace", line, task
            )
    return tuple(value)


def env(value: Any, line: int | None, task: str | None, fail: bounds.Fail) -> dict[str, str]:
    """Environment variables: names checked, values as text (``true`` as ``true``)."""
    if not isinstance(value, dict):
        raise fail("'env' must be a mapping of NAME: value", line, task)
    out = {}
    for k, v in value.items():
        if not _ENV_NAME_RE.match(str(k)) or len(str(k)) > MAX_NAME:
            raise fail(
                f"'env' has a bad variable name {shown(str(k))} (letters, digits and _, "
                f"at most {MAX_NAME})",
                line_of(value, k) or line,
                task,
            )
        if isinstance(v, (dict, list)) or v is None:
            raise fail(
                f"'env' variable '{k}' must be a string or number", line_of(value, k) or line, task
            )
        out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


def whole_number(
    value: Any, key: str, line: int | None, task: str, low: int, high: int, fail: bounds.Fail
) -> int:
    """A whole number from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"'{key}' must be a whole number, not {shown(value)}", line, task)
    if value < low:
        raise fail(f"'{key}' must be at least {low}, not {value}", line, task)
    if value > high:
        raise fail(f"'{key}' must be at most {high:,}, not {value:,}", line, task)
    return value


def bundle_path(value: Any, base: Path, line: int | None, fail: bounds.Fail) -> Path | None:
    """The bundle's folder or archive, relative to the task file's folder ``base``."""
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise fail("'bundle' must be the path of a folder or an archive", line, None)
    p = Path(value).expanduser()
    if not p.is_absolute():
        p = base / p
    if not p.exists():
        raise fail(
            f"bundle folder '{value}' does not exist (the path is relative to the task file)",
            line,
            None,
        )
    if not p.is_dir() and not is_archive(p):
        raise fail(
            f"bundle '{value}' is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})",
            line,
            None,
        )
    return p

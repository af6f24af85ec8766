"""One task: its fields, after defaults and matrix substitution, checked into a :class:`TaskSpec`."""

from __future__ import annotations

import re
from typing import Any

from shoal.spec import bounds
from shoal.spec.bounds import MAX_NAME, short_name
from shoal.spec.fields import commands, env, parse_duration, paths, whole_number
from shoal.spec.lines import line_of
from shoal.spec.model import TaskSpec

__all__ = ["make_task"]

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


def make_task(
    f: dict[str, Any], raw: Any, submitted: bool, fail: bounds.Fail
) -> tuple[TaskSpec, list[str]]:
    """The task the fields ``f`` describe, and the names or patterns of its ``after``.

    ``raw`` is the entry of the task file it came from (for lines and its
    name before expansion); ``submitted`` is the form a client sends, which
    carries that name as ``group``.
    """
    name = _name(f.get("name"), line_of(raw, "name"), fail)

    def where(key: str) -> int | None:
        return line_of(raw, key)

    def cmds(key: str) -> tuple[str, ...]:
        return commands(f.get(key), key, where(key), name, fail)

    run = cmds("run")
    reduce = _names(f.get("reduce", []))
    if reduce is None:
        raise fail("'reduce' must be a list of task names", where("reduce"), name)
    if not run and not reduce:
        raise fail("'run' is empty", where("run"), name)
    timeout = None
    if f.get("timeout") is not None:
        timeout = _duration(f["timeout"], "timeout", where("timeout"), name, fail)
    after = _names(f.get("after", []))
    if after is None:
        raise fail("'after' must be a task name or a list of names", where("after"), name)
    requires = _requires(f.get("requires", {}), where("requires"), name, fail)
    host = _host(f.get("host"), where("host"), name, fail)
    retry_delay = 2.0
    if f.get("retry_delay") is not None:
        retry_delay = _duration(
            f["retry_delay"], "retry_delay", where("retry_delay"), name, fail, zero=True
        )
    speculative = f.get("speculative", True)
    if not isinstance(speculative, bool):
        raise fail("'speculative' must be true or false", where("speculative"), name)
    group = _group(f, raw, submitted, name, fail)
    task = TaskSpec(
        name=name,
        run=run,
        download=cmds("download"),
        upload=cmds("upload"),
        cleanup=cmds("cleanup"),
        inputs=paths(f.get("inputs"), "inputs", where("inputs"), name, fail),
        outputs=paths(f.get("outputs"), "outputs", where("outputs"), name, fail),
        env=env(f.get("env", {}), where("env"), name, fail),
        timeout=timeout,
        retries=whole_number(
            f.get("retries", 0), "retries", where("retries"), name, 0, bounds.MAX_RETRIES, fail
        ),
        slots=whole_number(
            f.get("slots", 1), "slots", where("slots"), name, 1, bounds.MAX_SLOTS, fail
        ),
        priority=whole_number(
            f.get("priority", 0),
            "priority",
            where("priority"),
            name,
            -bounds.MAX_PRIORITY,
            bounds.MAX_PRIORITY,
            fail,
        ),
        host=host,
        requires=requires,
        retry_delay=retry_delay,
        speculative=speculative,
        group=group,
        reduce=tuple(reduce),
        values=_values(f.get("values"), name, fail),
        line=line_of(raw),
    )
    return task, after


def _name(name: Any, line: int | None, fail: bounds.Fail) -> str:
    """A task's name: a word of letters, digits, '.', '_' and '-' that can name a folder."""
    label = short_name(name) if isinstance(name, str) else None
    if not isinstance(name, str) or not name:
        raise fail("'name' must be a non-empty string", line, label)
    if len(name) > MAX_NAME:
        raise fail(
            f"the name has {len(name)} characters; the most is {MAX_NAME} "
            "(it names the task's log and output folders)",
            line,
            label,
        )
    if not _NAME_RE.match(name):
        bad = "".join(sorted({c for c in name if not re.match(r"[A-Za-z0-9._-]", c)}))
        hint = " (a matrix key in {braces} that the matrix does not define?)" if "{" in name else ""
        raise fail(
            f"bad name: only letters, digits, '.', '_' and '-' are allowed, not {bad!r}{hint}",
            line,
            name,
        )
    if name in (".", ".."):
        raise fail(
            "bad name: '.' and '..' name no folder of their own (they name the task's "
            "log and output folders); add a letter or digit",
            line,
            name,
        )
    return name


def _names(value: Any) -> list[str] | None:
    """A name or a list of names (``after``, ``reduce``); None if it is neither."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return list(value)


def _duration(
    value: Any, key: str, line: int | None, task: str, fail: bounds.Fail, zero: bool = False
) -> float:
    try:
        return parse_duration(value, zero=zero)
    except ValueError as e:
        raise fail(f"'{key}': {e}", line, task) from None


def _requires(value: Any, line: int | None, task: str, fail: bounds.Fail) -> dict[str, Any]:
    """Worker labels as a mapping; a list of names means each is ``true``."""
    if isinstance(value, list) and all(isinstance(r, str) for r in value):
        value = {r: True for r in value}
    if not isinstance(value, dict) or not all(
        isinstance(v, (str, int, float)) and len(str(k)) <= MAX_NAME for k, v in value.items()
    ):
        raise fail(
            "'requires' must be a mapping of labels to plain values, e.g. {gpu: true}", line, task
        )
    return dict(value)


def _host(value: Any, line: int | None, task: str, fail: bounds.Fail) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_NAME):
        raise fail(f"'host' must be a host name of at most {MAX_NAME} characters", line, task)
    return value


def _values(values: Any, name: str, fail: bounds.Fail) -> dict[str, Any]:
    """The matrix values a task was made with (a submitted task carries them as ``values``)."""
    if values is None:
        return {}
    plain = (str, int, float, bool)
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, plain) for k, v in values.items()
    ):
        raise fail("'values' must map matrix keys to plain values", None, name)
    return dict(values)


def _group(f: dict[str, Any], raw: Any, submitted: bool, name: str, fail: bounds.Fail) -> str:
    """The name of the task file's entry the task came from (its matrix group)."""
    group = raw.get("name") if isinstance(raw, dict) else None
    if submitted and isinstance(f.get("group"), str):
        group = f["group"]  # the entry of the task file it came from
    if isinstance(group, str) and len(group) > MAX_NAME:
        raise fail(
            f"the name before expansion has {len(group)} characters; the most is {MAX_NAME}",
            line_of(raw, "name"),
            name,
        )
    return str(group or name)

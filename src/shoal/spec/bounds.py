"""The bounds every task file and submitted run is held to.

A task file is read by ``shoal run`` on the user's machine and, through
:func:`shoal.spec.spec_from_dict`, by the boss for anyone who may submit.
A few hundred bytes of YAML with nested aliases expand to gigabytes, a
matrix of three lists of a thousand makes a billion tasks, and a number of
a thousand digits fits no column: each is refused here, in one line naming
the file, the line where it is known, the task and the bound, before
anything large is built.

Two passes: :func:`check_yaml_nodes` walks the YAML node graph before any
Python object is made from it (aliases counted every time they are used,
without expanding them); :func:`check_values` walks the plain data of any
form (YAML, JSON, a submitted dict) for depth, numbers and string lengths.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

import yaml

from shoal.exceptions import SpecError

__all__ = [
    "MAX_COMMAND",
    "MAX_DEPENDENCIES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NAME",
    "MAX_PATH",
    "MAX_PRIORITY",
    "MAX_RETRIES",
    "MAX_RUN_TEXT",
    "MAX_SECONDS",
    "MAX_SLOTS",
    "MAX_STRING",
    "MAX_TASKS",
    "MAX_YAML_NODES",
    "MAX_YAML_TEXT",
    "check_values",
    "check_yaml_nodes",
    "short_name",
    "shown",
]

MAX_FILE_BYTES = 10 * 1024 * 1024  # a task file; a 100,000-task matrix takes a few hundred KB
# Nodes of a YAML document with every alias expanded where it is used. A
# 100,000-entry matrix list is 100,000 nodes; a 10 MB file of small tasks a
# few million; the "billion laughs" a third of a billion.
MAX_YAML_NODES = 3_000_000
MAX_YAML_TEXT = 100 * 1024 * 1024  # characters of its scalars, aliases expanded likewise
MAX_DEPTH = 32  # nesting of lists and mappings; a valid task file needs 5
MAX_TASKS = 500_000  # tasks of one run after matrix expansion
MAX_RUN_TEXT = 256 * 1024 * 1024  # characters of all tasks' fields after expansion
MAX_DEPENDENCIES = 10_000_000  # 'after' edges of one run
# Task and run names become file names (logs/<run>/<task>/<attempt>.log,
# runs/<run>/<task>/...), which may have 255 bytes; host names are stored
# in the same width.
MAX_NAME = 200
MAX_PATH = 4096  # an input or output path
MAX_COMMAND = 1_000_000  # characters of one command (a longer script goes in the bundle)
MAX_STRING = 1_000_000  # any other string
NUL = "holds a NUL character (\\0), which no command, variable, name or path can hold"
MAX_SLOTS = 100_000
MAX_RETRIES = 1_000
MAX_PRIORITY = 1_000_000_000  # either way; the column is a 32-bit integer
MAX_SECONDS = 366 * 86400.0  # a timeout or retry delay
_INT64 = 2**63
_INT_DIGITS = 20  # digits of a YAML integer read at all (2**63 has 19)

# An error for the file: (message, line, task).
Fail = Callable[[str, "int | None", "str | None"], SpecError]


def shown(value: Any, width: int = 60) -> str:
    """A value's repr for a message, cut to ``width`` characters."""
    if isinstance(value, list):
        return f"a list of {len(value)}"  # its repr could be an alias bomb's expansion
    if isinstance(value, dict):
        return f"a mapping of {len(value)}"
    text = repr(value) if not isinstance(value, str) else repr(value[: width + 2])
    return text if len(text) <= width else text[: width - 1] + "…"


def short_name(name: str) -> str:
    """A task's name as a message shows it: cut when it is past any sane length."""
    return name if len(name) <= 60 else name[:59] + "…"


def check_yaml_nodes(root: yaml.Node, fail: Fail) -> None:
    """Refuse a YAML node graph that expands too far, nests too deep or holds huge scalars.

    Aliases are nodes shared in the graph: each shared node's expanded size
    is counted once and added every time it is used, so the cost is that
    of the document as written, whatever it expands to.
    """
    fail = _naming_tasks(root, fail)
    if isinstance(root, yaml.ScalarNode):
        _check_scalar(root, fail)
        return
    # id(collection) -> (values, characters, nesting) it expands to
    done: dict[int, tuple[int, int, int]] = {}
    open_: set[int] = set()  # collections whose children are being counted: a loop's end
    stack: list[yaml.Node] = [root]
    while stack:
        node = stack[-1]
        key = id(node)
        if key in done:
            stack.pop()
            continue
        children = _children(node)
        if key not in open_:
            open_.add(key)
            todo = [c for c in children if type(c) is not yaml.ScalarNode and id(c) not in done]
            for c in todo:
                if id(c) in open_:
                    raise fail(
                        "an alias refers to a node that contains it (a loop)",
                        c.start_mark.line + 1,
                        None,
                    )
            if todo:
                stack.extend(todo)
                continue
        stack.pop()
        open_.discard(key)
        size, text, depth = 1, 0, 0
        for c in children:
            if type(c) is yaml.ScalarNode:
                size += 1
                text += len(c.value)
                if len(c.value) > _INT_DIGITS:
                    _check_scalar(c, fail)
            else:
                n, t, d = done[id(c)]
                size, text, depth = size + n, text + t, max(depth, d)
        depth += 1
        line = node.start_mark.line + 1
        if size > MAX_YAML_NODES or text > MAX_YAML_TEXT:
            raise fail(
                f"the document expands to more than {MAX_YAML_NODES:,} values or "
                f"{MAX_YAML_TEXT // (1024 * 1024)} MB of text (aliases count every time "
                "they are used): write it out, or use a matrix",
                line,
                None,
            )
        if depth > MAX_DEPTH:
            raise fail(f"lists and mappings nest deeper than {MAX_DEPTH} levels", line, None)
        done[key] = (size, text, depth)


def _naming_tasks(root: yaml.Node, fail: Fail) -> Fail:
    """``fail``, adding the name of the task whose entry holds the line."""
    starts: list[tuple[int, str]] = []  # (first line of an entry of 'tasks:', its name)
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "tasks":
                root = value
    if isinstance(root, yaml.SequenceNode):
        for i, entry in enumerate(root.value):
            name = f"#{i + 1}"
            if isinstance(entry, yaml.MappingNode):
                for key, value in entry.value:
                    is_name = isinstance(key, yaml.ScalarNode) and key.value == "name"
                    if is_name and isinstance(value, yaml.ScalarNode):
                        name = short_name(value.value)
            starts.append((entry.start_mark.line + 1, name))

    def named(message: str, line: int | None, task: str | None) -> SpecError:
        if task is None and line is not None and starts:
            at = bisect.bisect_right(starts, (line, "\uffff")) - 1
            if at >= 0:
                task = starts[at][1]
        return fail(message, line, task)

    return named


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value)


def _check_scalar(node: yaml.ScalarNode, fail: Fail) -> None:
    value = node.value
    line = node.start_mark.line + 1
    if len(value) > MAX_STRING:
        raise fail(f"a value has {len(value):,} characters; the most is {MAX_STRING:,}", line, None)
    if node.tag == "tag:yaml.org,2002:int" and len(value.replace("_", "")) > _INT_DIGITS:
        raise fail(
            f"the number {shown(value, 30)} is out of range (at most {_INT64 - 1})", line, None
        )


def check_values(data: Any, fail: Fail, line_of: Callable[[Any, str | None], int | None]) -> None:
    """Refuse plain data (a parsed file or a submitted run) nested too deep, with
    integers past 64 bits, numbers that are not finite or strings past :data:`MAX_STRING`.

    Containers met twice (YAML aliases) are walked once. The walk that
    finds a fault again, with its line and task, runs only when there is one.
    """
    if not _within(data):
        _find_fault(data, fail, line_of)


def _within(data: Any) -> bool:
    """Whether ``data`` is within bounds: the fast walk (a 100,000-task run is read twice)."""
    seen: set[int] = set()
    level = [data]
    for _ in range(MAX_DEPTH):
        deeper = []
        for value in level:
            items = value.values() if isinstance(value, dict) else value
            if isinstance(value, dict) and any(type(k) is str and "\0" in k for k in value):
                return False
            for v in items:
                t = type(v)
                if t is str:
                    if len(v) > MAX_STRING or "\0" in v:
                        return False
                elif t is dict or t is list or isinstance(v, (dict, list)):
                    if id(v) not in seen:
                        seen.add(id(v))
                        deeper.append(v)
                elif v is not None and t is not bool and not _scalar_within(v):
                    return False
        if not deeper:
            return True
        level = deeper
    return False


def _scalar_within(v: Any) -> bool:
    if not isinstance(v, (str, int, float)):
        return True  # a date, say: the field that holds it says what is wrong
    if isinstance(v, str):
        return len(v) <= MAX_STRING
    if isinstance(v, bool):
        return True
    if isinstance(v, int):
        return -_INT64 <= v < _INT64
    return math.isfinite(v)


def _find_fault(data: Any, fail: Fail, line_of: Callable[[Any, str | None], int | None]) -> None:
    """Raise the error for the first value out of bounds, with its line and task."""
    seen: set[int] = set()
    # (value, depth, the mapping holding it and its key: for the line, the task's name)
    stack: list[tuple[Any, int, Any, str | None, str | None]] = [(data, 0, None, None, None)]
    while stack:
        value, depth, parent, key, task = stack.pop()
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise fail(
                    f"{_field(key)}has {len(value):,} characters; the most is {MAX_STRING:,}",
                    line_of(parent, key),
                    task,
                )
            if "\0" in value:
                raise fail(f"{_field(key)}{NUL}", line_of(parent, key), task)
            continue
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int):
            if not -_INT64 <= value < _INT64:
                raise fail(
                    f"{_field(key)}{shown(value, 30)} is out of range "
                    f"(a whole number from {-_INT64} to {_INT64 - 1})",
                    line_of(parent, key),
                    task,
                )
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise fail(
                    f"{_field(key)}{value} is not a finite number", line_of(parent, key), task
                )
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        if depth >= MAX_DEPTH:
            raise fail(
                f"lists and mappings nest deeper than {MAX_DEPTH} levels",
                line_of(parent, key),
                task,
            )
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and "\0" in k:
                    raise fail(f"the key {shown(k, 40)} {NUL}", line_of(value, k), task)
                stack.append((v, depth + 1, value, str(k), task))
        elif isinstance(value, list):
            in_tasks = key == "tasks" and depth == 1
            for i, item in enumerate(value):
                label = task
                if in_tasks and isinstance(item, dict):
                    name = item.get("name")
                    label = short_name(name) if isinstance(name, str) else f"#{i + 1}"
                stack.append((item, depth + 1, parent, key, label))


def _field(key: str | None) -> str:
    return f"'{key}': " if key is not None else ""

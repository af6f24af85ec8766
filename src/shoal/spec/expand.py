"""The entries of ``tasks:`` made into tasks: defaults merged, matrices expanded, names resolved.

A matrix is counted before it expands and every task's text as it is made,
so that a run past the bounds is refused before it is built. Its keys and
placeholders are checked against each other first: a ``{word}`` that is no
key (a typo) and a key that no field uses (often a field indented under
``matrix:``) would otherwise make every task fail at run time. ``after`` and
``reduce`` patterns become the names they match, and a cycle is named.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from shoal.exceptions import SpecError
from shoal.spec import bounds
from shoal.spec.bounds import short_name
from shoal.spec.fields import suggest
from shoal.spec.lines import LineDict, line_of
from shoal.spec.model import TASK_FIELDS, TaskSpec
from shoal.spec.task import make_task

__all__ = ["Expansion", "check_cycles", "substitute"]

_PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def substitute(value: Any, binding: Mapping[str, Any]) -> Any:
    """``value`` with each ``{key}`` of ``binding`` replaced, in every string it holds."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            whole = m.group(0)
            if whole == "{{":
                return "{"
            if whole == "}}":
                return "}"
            key = m.group(1)
            return str(binding[key]) if key in binding else whole

        return _PLACEHOLDER_RE.sub(repl, value)
    if isinstance(value, list):
        return [substitute(v, binding) for v in value]
    if isinstance(value, LineDict):
        lined = LineDict((k, substitute(v, binding)) for k, v in value.items())
        lined.line, lined.key_lines = value.line, value.key_lines
        return lined
    if isinstance(value, dict):
        return {k: substitute(v, binding) for k, v in value.items()}
    return value


def text_size(value: Any) -> tuple[int, int]:
    """Characters of the strings in a task entry, and how many ``{`` they hold."""
    chars = holes = 0
    todo = [value]
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            chars += len(v)
            holes += v.count("{")
        elif isinstance(v, dict):
            todo.extend(v.values())
            chars += sum(len(str(k)) for k in v)
        elif isinstance(v, list):
            todo.extend(v)
        else:
            chars += 8
    return chars, holes


class Expansion:
    """The tasks of one run as they are made, counted against the bounds."""

    def __init__(self, path: str, submitted: bool = False) -> None:
        self.path = path
        self.submitted = submitted  # the form a client sends: tasks carry their group
        self.n_tasks = 0  # after expansion, so far
        self.text = 0  # characters of the expanded tasks' fields, so far

    def error(self, message: str, line: int | None = None, task: str | None = None) -> SpecError:
        return SpecError(message, path=self.path, line=line, task=task)

    def _count_tasks(self, n: int, line: int | None, label: str) -> None:
        self.n_tasks += n
        if self.n_tasks > bounds.MAX_TASKS:
            raise self.error(
                f"the run would have more than {bounds.MAX_TASKS:,} tasks "
                f"(this entry makes {n:,}): split it into several runs",
                line,
                label,
            )

    def entry(
        self, raw: Any, index: int, defaults: Mapping[str, Any]
    ) -> list[tuple[dict[str, Any], Any]]:
        """One entry of ``tasks:`` (the ``index``-th) as the fields of each task it makes.

        Each comes with the entry itself, for lines and its name before expansion.
        """
        if isinstance(raw, str):
            raise self.error(
                f"task #{index + 1} is a string; write it as a mapping, e.g. '- name: t1' and 'run: {raw}'",
            )
        if not isinstance(raw, dict):
            raise self.error(f"task #{index + 1} must be a mapping of fields", line_of(raw))
        label = short_name(raw["name"]) if isinstance(raw.get("name"), str) else f"#{index + 1}"
        for key in raw:
            if key not in TASK_FIELDS and not (self.submitted and key in ("group", "values")):
                raise self.error(
                    f"unknown field '{key}'{suggest(key, TASK_FIELDS)}", line_of(raw, key), label
                )
        if "name" not in raw:
            raise self.error("has no 'name'", line_of(raw), label)
        if "run" not in raw and "run" not in defaults and "reduce" not in raw:
            raise self.error("has no 'run' command", line_of(raw), label)
        merged: dict[str, Any] = dict(defaults)
        merged.update(raw)
        matrix = raw.get("matrix")
        if matrix is None:
            self._count_tasks(1, line_of(raw), label)
            return [(merged, raw)]
        line = line_of(raw, "matrix")
        if not isinstance(matrix, dict) or not matrix:
            raise self.error(
                "'matrix' must be a mapping of lists, e.g. {seed: [1, 2, 3]}", line, label
            )
        for key, values in matrix.items():
            if not isinstance(values, list) or not values:
                raise self.error(
                    f"matrix key '{key}' must be a non-empty list, e.g. {key}: [1, 2, 3]",
                    line_of(matrix, key),
                    label,
                )
            for v in values:
                if isinstance(v, (dict, list)):
                    raise self.error(
                        f"matrix key '{key}' must list plain values (numbers or strings)",
                        line_of(matrix, key),
                        label,
                    )
        del merged["matrix"]
        keys = list(matrix)
        # Counted before a single task is made: a matrix of 1000 x 1000 x 1000 is not.
        combos = math.prod(len(matrix[k]) for k in keys)
        self._count_tasks(combos, line, label)
        # Each {key} grows by at most the longest value; the rest is copied per task.
        chars, holes = text_size(merged)
        longest = max(len(str(v)) for k in keys for v in matrix[k])
        self.text += combos * (chars + holes * longest)
        if self.text > bounds.MAX_RUN_TEXT:
            raise self.error(
                f"the matrix makes {combos:,} copies of about {chars + holes * longest:,} "
                f"characters each; a run may hold at most {bounds.MAX_RUN_TEXT:,} "
                "(put long commands in a script in the bundle)",
                line,
                label,
            )
        self._check_placeholders(merged, raw, defaults, matrix, label)
        out = []
        for combo in itertools.product(*(matrix[k] for k in keys)):
            binding = dict(zip(keys, combo, strict=True))
            fields = substitute(merged, binding)
            fields["values"] = binding  # kept: a sweep's tasks show as a table by key
            out.append((fields, raw))
        return out

    def _check_placeholders(
        self,
        merged: Mapping[str, Any],
        raw: Mapping[str, Any],
        defaults: Mapping[str, Any],
        matrix: Mapping[str, Any],
        label: str,
    ) -> None:
        """Refuse a ``{word}`` that is no matrix key, and a matrix key no field uses.

        Only a task with a matrix has placeholders: elsewhere every brace is
        the command's own (awk, brace expansion, ``${VAR}``) and is left alone.
        Here too ``${VAR}`` is the shell's, and ``{{``/``}}`` are literal braces.
        """
        keys = list(matrix)
        used: set[str] = set()
        # The entry's own fields in file order, then those it takes from defaults.
        for field in [*raw, *(k for k in defaults if k not in raw)]:
            if field == "matrix":
                continue
            source = raw if field in raw else defaults
            for text, line in _strings(merged[field], line_of(source, field)):
                for m in _PLACEHOLDER_RE.finditer(text):
                    word = m.group(1)
                    if word is None:  # '{{' or '}}'
                        continue
                    shell = m.start() > 0 and text[m.start() - 1] == "$"  # ${VAR}
                    if word in matrix:
                        used.add(word)
                    elif not shell:
                        where = f"'{field}'" + (" (from defaults)" if source is defaults else "")
                        raise self.error(
                            f"{where} has '{{{word}}}', which is no matrix key"
                            + _placeholder_hint(word, keys),
                            line,
                            label,
                        )
        for key in keys:
            if key in used:
                continue
            if not _KEY_RE.match(key):
                hint = "a matrix key is a word of letters, digits and '_', used as {key}"
            elif key in TASK_FIELDS:
                hint = f"indented too far? '{key}:' belongs beside 'matrix:', not under it"
            else:
                hint = f"put {{{key}}} in the name and the commands, or remove the key"
            raise self.error(
                f"matrix key '{key}' is used by no field of the task ({hint})",
                line_of(matrix, key),
                label,
            )

    def resolve(self, expanded: list[tuple[dict[str, Any], Any]]) -> list[TaskSpec]:
        """The tasks, each checked, with ``after`` patterns made the names they match."""
        seen: dict[str, int | None] = {}
        made_by: dict[str, Any] = {}
        partial: list[tuple[TaskSpec, list[str], Any]] = []
        for fields, raw in expanded:
            task, after = make_task(fields, raw, self.submitted, self.error)
            if task.name in seen and made_by[task.name] is raw:
                raise self.error(_same_name_in_matrix(raw, task.name), task.line, task.name)
            if task.name in seen:
                first = seen[task.name]
                where = f" (first defined at line {first})" if first else ""
                raise self.error(
                    f"duplicate task name{where}; names must be unique, add a matrix key to the name",
                    task.line,
                    task.name,
                )
            seen[task.name] = task.line
            made_by[task.name] = raw
            partial.append((task, after, raw))

        names = [t.name for t, _, _ in partial]
        name_set = set(names)
        resolved: list[TaskSpec] = []
        edges = 0
        for task, after, raw in partial:
            deps: dict[str, None] = {}  # in order, each once
            operands: dict[str, None] = {}
            # A reduction waits for its operands as for its 'after'; each is named as written.
            for key, patterns, found in (("after", after, deps), ("reduce", task.reduce, operands)):
                for pattern in patterns:
                    hits = self._matches(pattern, key, names, name_set, task.name, raw)
                    found.update(dict.fromkeys(hits))
                    edges += len(hits)
                    if edges > bounds.MAX_DEPENDENCIES:
                        raise self.error(
                            f"the run's tasks wait for more than {bounds.MAX_DEPENDENCIES:,} "
                            f"others in all ('{key}' patterns matching many tasks, many times): "
                            "wait for fewer, or add a task in between",
                            line_of(raw, key),
                            task.name,
                        )
            if task.reduce:
                deps.update(operands)
                task = replace(task, reduce=tuple(operands), after=tuple(deps))
            elif deps:
                task = replace(task, after=tuple(deps))
            resolved.append(task)
        check_cycles(resolved, self.error)
        return resolved

    def _matches(
        self, pattern: str, key: str, names: list[str], name_set: set[str], task: str, raw: Any
    ) -> list[str]:
        """The names an ``after`` or ``reduce`` entry of ``task`` stands for; none is an error."""
        if any(c in pattern for c in "*?["):
            hits = [n for n in fnmatch.filter(names, pattern) if n != task]
            if not hits:
                raise self.error(
                    f"'{key}' pattern '{pattern}' matches no task", line_of(raw, key), task
                )
            return hits
        if pattern not in name_set:
            close = difflib.get_close_matches(pattern, names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise self.error(f"'{key}' names no task '{pattern}'{hint}", line_of(raw, key), task)
        return [pattern]


def _strings(value: Any, line: int | None) -> Iterator[tuple[str, int | None]]:
    """Every string ``value`` holds, each with its line (a mapping's keys have their own)."""
    if isinstance(value, str):
        yield value, line
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, line)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, line_of(value, k) or line)


def _placeholder_hint(word: str, keys: list[str]) -> str:
    close = difflib.get_close_matches(word, keys, n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{{{close[0]}}}'?)"
    return f" (matrix keys: {', '.join(keys)}; write '{{{{{word}}}}}' for literal braces)"


def check_cycles(tasks: list[TaskSpec], fail: bounds.Fail) -> None:
    """Refuse a run whose tasks wait for each other in a circle, naming the circle."""
    by_name = {t.name: t for t in tasks}
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in tasks:
        if state.get(root.name):
            continue
        stack: list[tuple[str, Iterable[str]]] = [(root.name, iter(root.after))]
        path = [root.name]
        state[root.name] = 1
        while stack:
            name, it = stack[-1]
            nxt = next(iter(it), None)
            if nxt is None:
                state[name] = 2
                stack.pop()
                path.pop()
                continue
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                raise fail(
                    f"dependency cycle {' -> '.join(cycle)} (remove one of these 'after' entries)",
                    by_name[nxt].line,
                    nxt,
                )
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(by_name[nxt].after)))


def _same_name_in_matrix(raw: Any, name: str) -> str:
    """Why one matrix entry made two tasks named alike: its name leaves out a key."""
    matrix = raw.get("matrix") if isinstance(raw, Mapping) else None
    template = str(raw.get("name", "")) if isinstance(raw, Mapping) else ""
    missing = [
        str(k)
        for k, values in (matrix.items() if isinstance(matrix, Mapping) else ())
        if f"{{{k}}}" not in template and isinstance(values, list) and len(values) > 1
    ]
    if not missing:
        return f"duplicate task name '{name}'; names must be unique, add a matrix key to the name"
    keys = " and ".join(f"'{k}'" for k in missing)
    holes = "".join(f"-{{{k}}}" for k in missing)
    return (
        f"task name '{template}' does not use matrix key {keys}, so every task of the matrix "
        f"gets the same name '{name}' (put it in the name, e.g. name: {template}{holes})"
    )

"""Task files: parse, validate and expand them into a DAG.

A task file is YAML or JSON holding one run (see DESIGN.md), or a bare JSON
list of tasks. Everything is checked here, before anything is stored, and each
problem is a :class:`~shoal.exceptions.SpecError` naming the file, the line
where one is known, and the task.

This module knows nothing of the network or the database.
"""

from __future__ import annotations

import difflib
import fnmatch
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from shoal.exceptions import SpecError
from shoal.memory import gc_paused
from shoal.spec import bounds
from shoal.spec.bounds import MAX_NAME, short_name, shown
from shoal.spec.bundle import ARCHIVE_SUFFIXES, is_archive

__all__ = ["RunSpec", "TaskSpec", "load", "parse_data", "parse_duration", "parse_text"]

TASK_FIELDS = (
    "name",
    "run",
    "download",
    "upload",
    "cleanup",
    "inputs",
    "outputs",
    "after",
    "matrix",
    "env",
    "timeout",
    "retries",
    "slots",
    "priority",
    "host",
    "requires",
    "retry_delay",
    "speculative",
    "reduce",
)
RUN_FIELDS = ("name", "bundle", "setup", "env", "defaults", "tasks", "flow")
DEFAULTABLE = tuple(f for f in TASK_FIELDS if f not in ("name", "matrix"))

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_COMPACT_RE = re.compile(r"[-?][ \t]+[-?]")  # '- - x': a list in a list, on one line


@dataclass(frozen=True)
class TaskSpec:
    """One task after matrix expansion, ready to be stored."""

    name: str
    run: tuple[str, ...]
    download: tuple[str, ...] = ()
    upload: tuple[str, ...] = ()
    cleanup: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0
    slots: int = 1
    priority: int = 0
    host: str | None = None
    requires: Mapping[str, Any] = field(default_factory=dict)
    retry_delay: float = 2.0
    speculative: bool = True
    group: str = ""
    reduce: tuple[str, ...] = ()  # operands: the boss combines their results
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The task as plain JSON-ready data: every field."""
        return {
            "name": self.name,
            "run": list(self.run),
            "download": list(self.download),
            "upload": list(self.upload),
            "cleanup": list(self.cleanup),
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "after": list(self.after),
            "env": dict(self.env),
            "timeout": self.timeout,
            "retries": self.retries,
            "slots": self.slots,
            "priority": self.priority,
            "host": self.host,
            "requires": dict(self.requires),
            "retry_delay": self.retry_delay,
            "speculative": self.speculative,
            "group": self.group,
            "reduce": list(self.reduce),
        }

    def sparse_dict(self) -> dict[str, Any]:
        """Only the fields that differ from their defaults (the form ``shoal submit`` sends).

        A 100,000-task run is a fifth of the size this way, and the boss
        reads it back the faster.
        """
        out: dict[str, Any] = {}
        for k, v in self.to_dict().items():
            if k in ("name", "run"):
                out[k] = v
            elif k == "group":
                if v != self.name:
                    out[k] = v
            elif v != _DEFAULTS[k]:
                out[k] = v
        return out


_DEFAULTS = {
    k: v
    for k, v in TaskSpec(name="", run=()).to_dict().items()
    if k not in ("name", "run", "group")
}


@dataclass(frozen=True)
class RunSpec:
    """A whole run: its tasks in file order and what they share."""

    name: str
    tasks: tuple[TaskSpec, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    bundle: Path | None = None
    setup: str | None = None
    source: str | None = None
    final: str | None = None  # the task whose result is the run's result

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the boss; the bundle travels separately, by hash."""
        return {
            "name": self.name,
            "env": dict(self.env),
            "setup": self.setup,
            "final": self.final,
            "tasks": [t.sparse_dict() for t in self.tasks],
        }


# --------------------------------------------------------------------------
# durations


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``1.5``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1h30m"``.

    Raises ValueError with a message fit for the user.
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
                    return _positive(seconds, value)
            raise ValueError(
                f"bad duration {shown(value)} (use seconds or a number with s, m, h, "
                "e.g. 90s, 30m, 2h)"
            ) from None
    else:
        raise ValueError(f"bad duration {shown(value)} (use seconds or e.g. 90s, 30m, 2h)")
    return _positive(seconds, value)


def _positive(seconds: float, value: Any) -> float:
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {shown(value)}: it must be a finite number of seconds")
    if seconds <= 0:
        raise ValueError(f"bad duration {shown(value)}: it must be more than zero")
    if seconds > bounds.MAX_SECONDS:
        raise ValueError(
            f"bad duration {shown(value)}: the most is {bounds.MAX_SECONDS / 86400:.0f} days"
        )
    return seconds


# --------------------------------------------------------------------------
# reading files with line numbers


class _LineDict(dict[str, Any]):
    """A mapping from YAML that remembers its own line and each key's line."""

    line: int | None = None
    key_lines: dict[str, int]


# libyaml's parser where it is installed: ten times faster on large files.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BaseLoader):  # type: ignore[misc]
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> _LineDict:
    made = _LineDict()
    made.line = node.start_mark.line + 1
    made.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            key = str(key)
        made[key] = loader.construct_object(value_node, deep=True)
        made.key_lines[key] = key_node.start_mark.line + 1
    return made


_LineLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _line_of(obj: Any, key: str | None = None) -> int | None:
    if isinstance(obj, _LineDict):
        if key is not None and key in obj.key_lines:
            return obj.key_lines[key]
        return obj.line
    return None


def load(path: str | Path) -> RunSpec:
    """Read, validate and expand the task file at ``path``."""
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size > bounds.MAX_FILE_BYTES:
            raise SpecError(_too_big(p.stat().st_size), path=str(path))
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("no such file (check the path)", path=str(path)) from None
    except IsADirectoryError:
        raise SpecError("is a folder, not a task file", path=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("is not UTF-8 text", path=str(path)) from None
    except OSError as e:
        raise SpecError(f"cannot be read: {e.strerror}", path=str(path)) from None
    with gc_paused():
        return parse_text(text, path=str(path), base=p.parent, default_name=p.stem)


def parse_text(
    text: str,
    *,
    path: str = "<text>",
    base: Path | None = None,
    default_name: str = "run",
) -> RunSpec:
    """Validate and expand a task file given as text."""
    if len(text) > bounds.MAX_FILE_BYTES:
        raise SpecError(_too_big(len(text)), path=path)
    builder = _Builder(path, base or Path("."), default_name)
    if path.endswith(".json") or text.lstrip()[:1] in ("[", "{"):
        # JSON: the standard parser is fast; lines are looked up only for an error.
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            if path.endswith(".json"):
                raise SpecError(f"invalid JSON: {e.msg}", path=path, line=e.lineno) from None
        except RecursionError:
            raise SpecError(_too_deep(), path=path) from None
        except ValueError:  # a number of thousands of digits
            raise SpecError(
                f"invalid JSON: a number is out of range (at most {2**63 - 1})", path=path
            ) from None
        else:
            try:
                return builder.build(data)
            except SpecError as e:
                if e.line is not None:
                    raise
                try:
                    builder.build(_parse_document(text, path))
                except SpecError as with_line:
                    raise with_line from None
                raise
    return builder.build(_parse_document(text, path))


def parse_data(
    data: Any, *, path: str = "<data>", base: Path | None = None, default_name: str = "run"
) -> RunSpec:
    """Validate and expand a run given as Python data (the form of a task file)."""
    return _Builder(path, base or Path("."), default_name).build(data)


def _too_big(size: int) -> str:
    return (
        f"is {size / 1e6:.1f} MB; a task file may have at most "
        f"{bounds.MAX_FILE_BYTES // (1024 * 1024)} MB (generate tasks with a matrix)"
    )


def _too_deep() -> str:
    return f"lists and mappings nest deeper than {bounds.MAX_DEPTH} levels"


def _parse_document(text: str, path: str) -> Any:
    def fail(message: str, line: int | None, task: str | None) -> SpecError:
        return SpecError(message, path=path, line=line, task=task)

    _check_nesting(text, fail)
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        # Before any object is made: what the aliases expand to, how deep, how long.
        bounds.check_yaml_nodes(node, fail)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = e.problem or e.context or "syntax error"
        raise SpecError(f"invalid YAML: {problem}", path=path, line=line) from None
    except yaml.YAMLError as e:
        if path.endswith(".json"):
            # Valid JSON that YAML refuses (tabs, say): take it without lines.
            return json.loads(text)
        raise SpecError(f"invalid YAML: {e}", path=path) from None
    except RecursionError:
        raise SpecError(_too_deep(), path=path) from None
    except (ValueError, OverflowError) as e:  # a date like 2024-13-45
        raise SpecError(f"invalid YAML: {e}", path=path) from None
    finally:
        loader.dispose()


def _check_nesting(text: str, fail: bounds.Fail) -> None:
    """Refuse nesting past :data:`~shoal.spec.bounds.MAX_DEPTH` before libyaml composes it.

    Composing recurses in C: a hundred thousand ``[`` crash the process.
    Nesting comes from brackets, from ``- -`` (or ``?``) on one line, or from
    indentation, which needs a longer line per level (two thousand levels
    take megabytes); a document with few of the first and under a megabyte
    cannot nest deep enough to matter, and the others are read as a stream
    of events first, which recurses nowhere.
    """
    marks = text.count("[") + text.count("{") + len(_COMPACT_RE.findall(text))
    if marks < 2000 and len(text) < 1_000_000:
        return
    loader = _LineLoader(text)
    try:
        depth = 0
        while (event := loader.get_event()) is not None:
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > bounds.MAX_DEPTH:
                    mark = event.start_mark
                    raise fail(_too_deep(), mark.line + 1 if mark is not None else None, None)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # the parse proper says what is wrong, with its line
    finally:
        loader.dispose()


# --------------------------------------------------------------------------
# building the run


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else f" (known fields: {', '.join(known)})"


def _substitute(value: Any, binding: Mapping[str, Any]) -> Any:
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
        return [_substitute(v, binding) for v in value]
    if isinstance(value, _LineDict):
        lined = _LineDict((k, _substitute(v, binding)) for k, v in value.items())
        lined.line, lined.key_lines = value.line, value.key_lines
        return lined
    if isinstance(value, dict):
        return {k: _substitute(v, binding) for k, v in value.items()}
    return value


def _text_size(value: Any) -> tuple[int, int]:
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


class _Builder:
    def __init__(self, path: str, base: Path, default_name: str, submitted: bool = False) -> None:
        self.path = path
        self.base = base
        self.default_name = default_name[:MAX_NAME]  # a file's stem may be longer
        self.submitted = submitted  # the form a client sends: may name its final task
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

    def build(self, data: Any) -> RunSpec:
        if data is None:
            raise self.error("the file is empty (it needs a list of tasks under 'tasks:')")
        if isinstance(data, list):
            data = {"tasks": data}
        if not isinstance(data, dict):
            raise self.error(
                "the top level must be a mapping with 'tasks:' or a list of tasks",
                _line_of(data),
            )
        bounds.check_values(data, self.error, _line_of)
        for key in data:
            if key not in RUN_FIELDS and not (self.submitted and key == "final"):
                hint = _suggest(key, RUN_FIELDS)
                if key in TASK_FIELDS:
                    hint = " (task fields go inside an entry of 'tasks:')"
                raise self.error(f"unknown field '{key}'{hint}", _line_of(data, key))

        name = data.get("name", self.default_name)
        if not isinstance(name, str) or not name:
            raise self.error("the run's 'name' must be a non-empty string", _line_of(data, "name"))
        if len(name) > MAX_NAME:
            raise self.error(
                f"the run's 'name' has {len(name)} characters; the most is {MAX_NAME}",
                _line_of(data, "name"),
            )
        env = self._env(data.get("env", {}), _line_of(data, "env"), None)
        setup = self._commands_text(data.get("setup"), "setup", _line_of(data, "setup"), None)
        bundle = self._bundle(data.get("bundle"), _line_of(data, "bundle"))

        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise self.error(
                "'defaults' must be a mapping of task fields", _line_of(data, "defaults")
            )
        for key in defaults:
            if key not in DEFAULTABLE:
                raise self.error(
                    f"unknown field '{key}' in defaults{_suggest(key, DEFAULTABLE)}",
                    _line_of(defaults, key),
                )

        raw_tasks = data.get("tasks")
        if raw_tasks is None:
            raise self.error("no 'tasks:' list", _line_of(data))
        if not isinstance(raw_tasks, list):
            raise self.error("'tasks' must be a list", _line_of(data, "tasks"))
        if not raw_tasks:
            raise self.error("'tasks' is empty: there is nothing to run", _line_of(data, "tasks"))

        expanded: list[tuple[dict[str, Any], Any]] = []
        for index, raw in enumerate(raw_tasks):
            expanded.extend(self._expand(raw, index, defaults))

        tasks = self._resolve(expanded)
        final = None
        if "flow" in data:
            tasks, final = self._flow(data["flow"], tasks, _line_of(data, "flow"))
        elif isinstance(data.get("final"), str) and data["final"] in {t.name for t in tasks}:
            final = data["final"]  # the submitted form of a flow's run
        return RunSpec(
            name=name,
            tasks=tuple(tasks),
            env=env,
            bundle=bundle,
            setup=setup,
            source=self.path,
            final=final,
        )

    def _flow(
        self, text: Any, tasks: list[TaskSpec], line: int | None
    ) -> tuple[list[TaskSpec], str | None]:
        """The tasks a flow runs, ordered as it says, with its reductions."""
        from shoal.spec.flow import FlowError, plan

        if not isinstance(text, str) or not text.strip():
            raise self.error("'flow' must be an expression such as \"(a | b); c; a + b + c\"", line)
        by_name = {t.name: t for t in tasks}
        try:
            made = plan(text, known=set(by_name))
        except FlowError as e:
            raise self.error(f"flow {e}: {shown(text, 200)}", line) from None
        except RecursionError:
            raise self.error("the flow nests '(' too deep", line) from None
        out: dict[str, TaskSpec] = {}
        for node in made.nodes:
            if node.is_reduction:
                out[node.name] = TaskSpec(
                    name=node.name,
                    run=(),
                    reduce=tuple(node.operands),
                    after=tuple(node.after),
                    line=line,
                    group="sum",
                )
            else:
                task = by_name[node.name]
                after = tuple(dict.fromkeys([*task.after, *node.after]))
                out[node.name] = replace(task, after=after)
        # A flow task's own 'after' comes along, and what that needs in turn.
        todo = [d for t in out.values() for d in t.after if d not in out]
        while todo:
            name = todo.pop()
            if name not in out:
                out[name] = by_name[name]
                todo.extend(d for d in by_name[name].after if d not in out)
        ordered = [out[t.name] for t in tasks if t.name in out]
        ordered += [t for t in out.values() if t.name not in by_name]
        self._check_cycles(ordered)
        return ordered, made.final

    # -- one entry of tasks: ------------------------------------------------

    def _expand(
        self, raw: Any, index: int, defaults: Mapping[str, Any]
    ) -> list[tuple[dict[str, Any], Any]]:
        if isinstance(raw, str):
            raise self.error(
                f"task #{index + 1} is a string; write it as a mapping, e.g. '- name: t1' and 'run: {raw}'",
            )
        if not isinstance(raw, dict):
            raise self.error(f"task #{index + 1} must be a mapping of fields", _line_of(raw))
        label = short_name(raw["name"]) if isinstance(raw.get("name"), str) else f"#{index + 1}"
        for key in raw:
            if key not in TASK_FIELDS and not (self.submitted and key == "group"):
                raise self.error(
                    f"unknown field '{key}'{_suggest(key, TASK_FIELDS)}", _line_of(raw, key), label
                )
        if "name" not in raw:
            raise self.error("has no 'name'", _line_of(raw), label)
        if "run" not in raw and "run" not in defaults and "reduce" not in raw:
            raise self.error("has no 'run' command", _line_of(raw), label)
        merged: dict[str, Any] = dict(defaults)
        merged.update(raw)
        matrix = raw.get("matrix")
        if matrix is None:
            self._count_tasks(1, _line_of(raw), label)
            return [(merged, raw)]
        line = _line_of(raw, "matrix")
        if not isinstance(matrix, dict) or not matrix:
            raise self.error(
                "'matrix' must be a mapping of lists, e.g. {seed: [1, 2, 3]}", line, label
            )
        for key, values in matrix.items():
            if not isinstance(values, list) or not values:
                raise self.error(
                    f"matrix key '{key}' must be a non-empty list, e.g. {key}: [1, 2, 3]",
                    _line_of(matrix, key),
                    label,
                )
            for v in values:
                if isinstance(v, (dict, list)):
                    raise self.error(
                        f"matrix key '{key}' must list plain values (numbers or strings)",
                        _line_of(matrix, key),
                        label,
                    )
        del merged["matrix"]
        keys = list(matrix)
        # Counted before a single task is made: a matrix of 1000 x 1000 x 1000 is not.
        combos = math.prod(len(matrix[k]) for k in keys)
        self._count_tasks(combos, line, label)
        # Each {key} grows by at most the longest value; the rest is copied per task.
        chars, holes = _text_size(merged)
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
        out = []
        for combo in itertools.product(*(matrix[k] for k in keys)):
            out.append((_substitute(merged, dict(zip(keys, combo, strict=True))), raw))
        return out

    def _resolve(self, expanded: list[tuple[dict[str, Any], Any]]) -> list[TaskSpec]:
        seen: dict[str, int | None] = {}
        partial: list[tuple[TaskSpec, list[str], Any]] = []
        for fields, raw in expanded:
            task, after = self._task(fields, raw)
            if task.name in seen:
                first = seen[task.name]
                where = f" (first defined at line {first})" if first else ""
                raise self.error(
                    f"duplicate task name{where}; names must be unique, add a matrix key to the name",
                    task.line,
                    task.name,
                )
            seen[task.name] = task.line
            partial.append((task, after, raw))

        names = [t.name for t, _, _ in partial]
        name_set = set(names)
        resolved: list[TaskSpec] = []
        edges = 0
        for task, after, raw in partial:
            deps: dict[str, None] = {}  # in order, each once
            for pattern in after:
                if any(c in pattern for c in "*?["):
                    hits = [n for n in fnmatch.filter(names, pattern) if n != task.name]
                    if not hits:
                        raise self.error(
                            f"'after' pattern '{pattern}' matches no task",
                            _line_of(raw, "after"),
                            task.name,
                        )
                elif pattern not in name_set:
                    close = difflib.get_close_matches(pattern, names, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise self.error(
                        f"'after' names no task '{pattern}'{hint}",
                        _line_of(raw, "after"),
                        task.name,
                    )
                else:
                    hits = [pattern]
                deps.update(dict.fromkeys(hits))
                edges += len(hits)
                if edges > bounds.MAX_DEPENDENCIES:
                    raise self.error(
                        f"the run's tasks wait for more than {bounds.MAX_DEPENDENCIES:,} others "
                        "in all ('after' patterns matching many tasks, many times): "
                        "wait for fewer, or add a task in between",
                        _line_of(raw, "after"),
                        task.name,
                    )
            if task.reduce:
                operands: dict[str, None] = {}
                for pattern in task.reduce:
                    hits = (
                        [n for n in fnmatch.filter(names, pattern) if n != task.name]
                        if any(c in pattern for c in "*?[")
                        else [pattern]
                    )
                    operands.update(dict.fromkeys(hits))
                task = replace(task, reduce=tuple(operands), after=tuple(deps))
            elif deps:
                task = replace(task, after=tuple(deps))
            resolved.append(task)
        self._check_cycles(resolved)
        return resolved

    def _check_cycles(self, tasks: list[TaskSpec]) -> None:
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
                    raise self.error(
                        f"dependency cycle {' -> '.join(cycle)} (remove one of these 'after' entries)",
                        by_name[nxt].line,
                        nxt,
                    )
                if not state.get(nxt):
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append((nxt, iter(by_name[nxt].after)))

    # -- fields ------------------------------------------------------------

    def _task(self, f: dict[str, Any], raw: Any) -> tuple[TaskSpec, list[str]]:
        line = _line_of(raw)
        name = f.get("name")
        label = short_name(name) if isinstance(name, str) else None
        if not isinstance(name, str) or not name:
            raise self.error("'name' must be a non-empty string", _line_of(raw, "name"), label)
        if len(name) > MAX_NAME:
            raise self.error(
                f"the name has {len(name)} characters; the most is {MAX_NAME} "
                "(it names the task's log and output folders)",
                _line_of(raw, "name"),
                label,
            )
        if not _NAME_RE.match(name):
            bad = "".join(sorted({c for c in name if not re.match(r"[A-Za-z0-9._-]", c)}))
            hint = (
                " (a matrix key in {braces} that the matrix does not define?)"
                if "{" in name
                else ""
            )
            raise self.error(
                f"bad name: only letters, digits, '.', '_' and '-' are allowed, not {bad!r}{hint}",
                _line_of(raw, "name"),
                name,
            )
        if name in (".", ".."):
            raise self.error(
                "bad name: '.' and '..' name no folder of their own (they name the task's "
                "log and output folders); add a letter or digit",
                _line_of(raw, "name"),
                name,
            )

        def where(key: str) -> int | None:
            return _line_of(raw, key)

        def commands(key: str) -> tuple[str, ...]:
            return self._commands(f.get(key), key, where(key), name)

        run = commands("run")
        reduce = f.get("reduce", [])
        if isinstance(reduce, str):
            reduce = [reduce]
        if not isinstance(reduce, list) or not all(isinstance(r, str) for r in reduce):
            raise self.error("'reduce' must be a list of task names", where("reduce"), name)
        if not run and not reduce:
            raise self.error("'run' is empty", where("run"), name)
        timeout = None
        if f.get("timeout") is not None:
            try:
                timeout = parse_duration(f["timeout"])
            except ValueError as e:
                raise self.error(f"'timeout': {e}", where("timeout"), name) from None
        after = f.get("after", [])
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
            raise self.error("'after' must be a task name or a list of names", where("after"), name)
        requires = f.get("requires", {})
        if isinstance(requires, list) and all(isinstance(r, str) for r in requires):
            requires = {r: True for r in requires}
        if not isinstance(requires, dict) or not all(
            isinstance(v, (str, int, float)) and len(str(k)) <= MAX_NAME
            for k, v in requires.items()
        ):
            raise self.error(
                "'requires' must be a mapping of labels to plain values, e.g. {gpu: true}",
                where("requires"),
                name,
            )
        host = f.get("host")
        if host is not None and (not isinstance(host, str) or len(host) > MAX_NAME):
            raise self.error(
                f"'host' must be a host name of at most {MAX_NAME} characters", where("host"), name
            )
        retry_delay = 2.0
        if f.get("retry_delay") is not None:
            try:
                retry_delay = (
                    0.0 if f["retry_delay"] in (0, "0") else parse_duration(f["retry_delay"])
                )
            except ValueError as e:
                raise self.error(f"'retry_delay': {e}", where("retry_delay"), name) from None
        speculative = f.get("speculative", True)
        if not isinstance(speculative, bool):
            raise self.error("'speculative' must be true or false", where("speculative"), name)
        group = raw.get("name") if isinstance(raw, dict) else None
        if self.submitted and isinstance(f.get("group"), str):
            group = f["group"]  # the entry of the task file it came from
        if isinstance(group, str) and len(group) > MAX_NAME:
            raise self.error(
                f"the name before expansion has {len(group)} characters; the most is {MAX_NAME}",
                _line_of(raw, "name"),
                name,
            )
        task = TaskSpec(
            name=name,
            run=run,
            download=commands("download"),
            upload=commands("upload"),
            cleanup=commands("cleanup"),
            inputs=self._strings(f.get("inputs"), "inputs", where("inputs"), name),
            outputs=self._strings(f.get("outputs"), "outputs", where("outputs"), name),
            env=self._env(f.get("env", {}), where("env"), name),
            timeout=timeout,
            retries=self._int(
                f.get("retries", 0), "retries", where("retries"), name, 0, bounds.MAX_RETRIES
            ),
            slots=self._int(f.get("slots", 1), "slots", where("slots"), name, 1, bounds.MAX_SLOTS),
            priority=self._int(
                f.get("priority", 0),
                "priority",
                where("priority"),
                name,
                -bounds.MAX_PRIORITY,
                bounds.MAX_PRIORITY,
            ),
            host=host,
            requires=dict(requires),
            retry_delay=retry_delay,
            speculative=speculative,
            group=str(group or name),
            reduce=tuple(reduce),
            line=line,
        )
        return task, list(after) + [r for r in reduce if r not in after]

    def _commands(
        self, value: Any, key: str, line: int | None, task: str | None
    ) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,) if value.strip() else ()
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            return tuple(str(v) for v in value if str(v).strip())
        raise self.error(f"'{key}' must be a command or a list of commands", line, task)

    def _commands_text(
        self, value: Any, key: str, line: int | None, task: str | None
    ) -> str | None:
        cmds = self._commands(value, key, line, task)
        return "\n".join(cmds) if cmds else None

    def _strings(self, value: Any, key: str, line: int | None, task: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, str) and v for v in value):
            for v in value:
                if len(v) > bounds.MAX_PATH:
                    raise self.error(
                        f"'{key}' has a path of {len(v):,} characters; the most is "
                        f"{bounds.MAX_PATH}",
                        line,
                        task,
                    )
                if v.startswith("/") or ".." in Path(v).parts:
                    raise self.error(
                        f"'{key}' entry '{v}' must be a relative path inside the workspace",
                        line,
                        task,
                    )
            return tuple(value)
        raise self.error(f"'{key}' must be a path or a list of paths", line, task)

    def _env(self, value: Any, line: int | None, task: str | None) -> dict[str, str]:
        if not isinstance(value, dict):
            raise self.error("'env' must be a mapping of NAME: value", line, task)
        out = {}
        for k, v in value.items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(k)) or len(str(k)) > MAX_NAME:
                raise self.error(
                    f"'env' has a bad variable name {shown(str(k))} (letters, digits and _, "
                    f"at most {MAX_NAME})",
                    _line_of(value, k) or line,
                    task,
                )
            if isinstance(v, (dict, list)) or v is None:
                raise self.error(
                    f"'env' variable '{k}' must be a string or number",
                    _line_of(value, k) or line,
                    task,
                )
            out[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
        return out

    def _int(self, value: Any, key: str, line: int | None, task: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"'{key}' must be a whole number, not {shown(value)}", line, task)
        if value < low:
            raise self.error(f"'{key}' must be at least {low}, not {value}", line, task)
        if value > high:
            raise self.error(f"'{key}' must be at most {high:,}, not {value:,}", line, task)
        return value

    def _bundle(self, value: Any, line: int | None) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.error("'bundle' must be the path of a folder or an archive", line)
        p = Path(value).expanduser()
        if not p.is_absolute():
            p = self.base / p
        if not p.exists():
            raise self.error(
                f"bundle folder '{value}' does not exist (the path is relative to the task file)",
                line,
            )
        if not p.is_dir() and not is_archive(p):
            raise self.error(
                f"bundle '{value}' is neither a folder nor an archive ({', '.join(ARCHIVE_SUFFIXES)})",
                line,
            )
        return p


def spec_from_dict(data: Mapping[str, Any], *, path: str = "<submitted>") -> RunSpec:
    """Rebuild and re-check a run the client sent as :meth:`RunSpec.to_dict`."""
    clean = {k: v for k, v in data.items() if k in ("name", "env", "setup", "tasks", "final")}
    if clean.get("setup") is None:
        clean.pop("setup", None)
    return _Builder(path, Path("."), str(data.get("name") or "run"), submitted=True).build(clean)

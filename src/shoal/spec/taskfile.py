"""Task files: read, checked and expanded into a run.

A task file is YAML or JSON holding one run (see DESIGN.md), or a bare JSON
list of tasks. Everything is checked here, before anything is stored, and each
problem is a :class:`~shoal.exceptions.SpecError` naming the file, the line
where one is known, and the task. The run's own fields are read here; each
entry of ``tasks:`` is expanded by :mod:`~shoal.spec.expand` and checked by
:mod:`~shoal.spec.task`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from shoal.exceptions import SpecError
from shoal.memory import gc_paused
from shoal.spec import bounds
from shoal.spec.bounds import MAX_NAME, shown
from shoal.spec.expand import Expansion, check_cycles
from shoal.spec.fields import bundle_path, commands_text, env, suggest
from shoal.spec.lines import line_of, parse_document, too_deep
from shoal.spec.model import DEFAULTABLE, RUN_FIELDS, TASK_FIELDS, RunSpec, TaskSpec

__all__ = ["load", "parse_data", "parse_text", "spec_from_dict"]


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
            raise SpecError(too_deep(), path=path) from None
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
                    builder.build(parse_document(text, path))
                except SpecError as with_line:
                    raise with_line from None
                raise
    return builder.build(parse_document(text, path))


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


class _Builder:
    """Reads the run's own fields and has its entries of ``tasks:`` made into tasks."""

    def __init__(self, path: str, base: Path, default_name: str, submitted: bool = False) -> None:
        self.path = path
        self.base = base
        self.default_name = default_name[:MAX_NAME]  # a file's stem may be longer
        self.submitted = submitted  # the form a client sends: may name its final task

    def error(self, message: str, line: int | None = None, task: str | None = None) -> SpecError:
        return SpecError(message, path=self.path, line=line, task=task)

    def build(self, data: Any) -> RunSpec:
        """The run that ``data`` (a parsed task file, or a submitted run) describes."""
        if data is None:
            raise self.error("the file is empty (it needs a list of tasks under 'tasks:')")
        if isinstance(data, list):
            data = {"tasks": data}
        if not isinstance(data, dict):
            raise self.error(
                "the top level must be a mapping with 'tasks:' or a list of tasks",
                line_of(data),
            )
        bounds.check_values(data, self.error, line_of)
        for key in data:
            if key not in RUN_FIELDS and not (self.submitted and key == "final"):
                hint = suggest(key, RUN_FIELDS)
                if key in TASK_FIELDS:
                    hint = " (task fields go inside an entry of 'tasks:')"
                raise self.error(f"unknown field '{key}'{hint}", line_of(data, key))

        name = data.get("name", self.default_name)
        if not isinstance(name, str) or not name:
            raise self.error("the run's 'name' must be a non-empty string", line_of(data, "name"))
        if len(name) > MAX_NAME:
            raise self.error(
                f"the run's 'name' has {len(name)} characters; the most is {MAX_NAME}",
                line_of(data, "name"),
            )
        run_env = env(data.get("env", {}), line_of(data, "env"), None, self.error)
        setup = commands_text(data.get("setup"), "setup", line_of(data, "setup"), None, self.error)
        bundle = bundle_path(data.get("bundle"), self.base, line_of(data, "bundle"), self.error)
        tasks = self._tasks(data)
        final = None
        if "flow" in data:
            tasks, final = self._flow(data["flow"], tasks, line_of(data, "flow"))
        elif isinstance(data.get("final"), str) and data["final"] in {t.name for t in tasks}:
            final = data["final"]  # the submitted form of a flow's run
        return RunSpec(
            name=name,
            tasks=tuple(tasks),
            env=run_env,
            bundle=bundle,
            setup=setup,
            source=self.path,
            final=final,
        )

    def _tasks(self, data: dict[str, Any]) -> list[TaskSpec]:
        """The entries of ``tasks:``, with ``defaults:`` under each, made into tasks."""
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise self.error(
                "'defaults' must be a mapping of task fields", line_of(data, "defaults")
            )
        for key in defaults:
            if key not in DEFAULTABLE:
                raise self.error(
                    f"unknown field '{key}' in defaults{suggest(key, DEFAULTABLE)}",
                    line_of(defaults, key),
                )
        raw_tasks = data.get("tasks")
        if raw_tasks is None:
            raise self.error("no 'tasks:' list", line_of(data))
        if not isinstance(raw_tasks, list):
            raise self.error("'tasks' must be a list", line_of(data, "tasks"))
        if not raw_tasks:
            raise self.error("'tasks' is empty: there is nothing to run", line_of(data, "tasks"))
        expansion = Expansion(self.path, self.submitted)
        expanded: list[tuple[dict[str, Any], Any]] = []
        for index, raw in enumerate(raw_tasks):
            expanded.extend(expansion.entry(raw, index, defaults))
        return expansion.resolve(expanded)

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
        check_cycles(ordered, self.error)
        return ordered, made.final


def spec_from_dict(data: Mapping[str, Any], *, path: str = "<submitted>") -> RunSpec:
    """Rebuild and re-check a run the client sent as :meth:`RunSpec.to_dict`."""
    clean = {k: v for k, v in data.items() if k in ("name", "env", "setup", "tasks", "final")}
    if clean.get("setup") is None:
        clean.pop("setup", None)
    return _Builder(path, Path("."), str(data.get("name") or "run"), submitted=True).build(clean)

"""The Python API: build a run in code, run it here or submit it to a boss.

::

    import shoal

    run = shoal.Run("pi")
    chunks = run.task("chunk-{i}", "python chunk.py --seed {i}", matrix={"i": range(8)})
    run.reduce("total", chunks)
    result = run.execute(workers=4)
    print(result.value)          # the total
    print(result.results)        # every task's result

A run built here goes through the same validation as a task file and runs
through the same code as ``shoal run`` (:class:`~shoal.session.LocalSession`).
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoal.datastore.layout import output_prefix
from shoal.exceptions import BadInput, NotFound
from shoal.spec import RunSpec, parse_data

__all__ = ["Handle", "Result", "Run", "Task", "functions_as_tasks"]

FINAL_STATES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class Task:
    """A task (or a matrix of tasks) added to a :class:`Run`; pass it to ``after``."""

    name: str

    def __str__(self) -> str:
        return self.name


def _names(items: Iterable[Task | str] | Task | str | None) -> list[str]:
    if items is None:
        return []
    if isinstance(items, (Task, str)):
        items = [items]
    out = []
    for item in items:
        name = str(item)
        # A matrix task's handle stands for all its tasks.
        out.append(_glob_of(name))
    return out


def _glob_of(name: str) -> str:
    import re

    return re.sub(r"\{[A-Za-z_][A-Za-z0-9_]*\}", "*", name)


class Run:
    """A run: tasks, their dependencies, reductions and an optional flow."""

    def __init__(
        self,
        name: str = "run",
        *,
        env: Mapping[str, Any] | None = None,
        bundle: str | os.PathLike[str] | None = None,
        setup: str | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._data: dict[str, Any] = {"name": name, "tasks": []}
        if env:
            self._data["env"] = dict(env)
        if bundle is not None:
            self._data["bundle"] = str(bundle)
        if setup is not None:
            self._data["setup"] = setup
        if defaults:
            self._data["defaults"] = dict(defaults)

    def task(
        self,
        name: str,
        run: str | Iterable[str] | None = None,
        *,
        after: Iterable[Task | str] | Task | str | None = None,
        matrix: Mapping[str, Iterable[Any]] | None = None,
        **fields: Any,
    ) -> Task:
        """Add a task (any field of a task file, as keyword arguments); its handle."""
        entry: dict[str, Any] = {"name": name, **fields}
        if run is not None:
            entry["run"] = run if isinstance(run, str) else list(run)
        if after is not None:
            entry["after"] = _names(after)
        if matrix is not None:
            entry["matrix"] = {k: list(v) for k, v in matrix.items()}
        self._data["tasks"].append(entry)
        return Task(name)

    def reduce(
        self,
        name: str,
        *operands: Task | str | Iterable[Task | str],
        run: str | None = None,
        after: Iterable[Task | str] | Task | str | None = None,
    ) -> Task:
        """A task whose result combines its operands' results.

        Without ``run`` the boss adds them as they arrive (numbers add,
        strings and lists concatenate, objects merge); with ``run`` that
        command reads them as a JSON object on stdin.
        """
        names: list[str] = []
        for op in operands:
            names.extend(_names(op) if isinstance(op, (Task, str)) else _names(list(op)))
        if not names:
            raise BadInput(f"reduction '{name}' has no operands")
        return self.task(name, run, after=after, reduce=names)

    def flow(self, expression: str) -> Run:
        """Order the tasks by a flow expression, e.g. ``"(a | b | c); d; a + b + c + d"``."""
        self._data["flow"] = expression
        return self

    def spec(self) -> RunSpec:
        """The checked, expanded run (raises :class:`~shoal.exceptions.SpecError`)."""
        return parse_data(self._data, path=f"<run {self.name}>", base=Path.cwd())

    def execute(
        self,
        workers: int | None = None,
        *,
        slots: int = 1,
        state: str | os.PathLike[str] = ".shoal",
        fresh: bool = False,
        lease: float = 30.0,
    ) -> Result:
        """Run it on this machine, as ``shoal run`` does, and wait for the end."""
        from shoal.session import LocalSession, check_fits
        from shoal.statedir import StateDir

        spec = self.spec()
        check_fits(spec, slots)
        n = workers or os.cpu_count() or 1
        with LocalSession(
            StateDir(Path(state)), workers=n, slots=slots, lease_seconds=lease
        ) as session:
            run_id = session.submit(spec, reuse=not fresh)
            session.wait(run_id)
            assert session.client is not None
            return _result(session.client, run_id, Path(state) / "data")

    def submit(
        self,
        boss: str | None = None,
        token: str | None = None,
        state: str | os.PathLike[str] = ".shoal",
    ) -> Handle:
        """Send it to a running boss; a handle to wait on."""
        from shoal.client import BossClient
        from shoal.statedir import StateDir

        client = BossClient.find(boss, token, StateDir(Path(state)))
        return Handle(client, client.submit(self.spec()))


@dataclass
class Result:
    """How a run ended: its state, every task and result, and its final value."""

    run_id: int
    name: str
    state: str
    counts: dict[str, int]
    value: Any
    results: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    data: Path | None = None

    @property
    def ok(self) -> bool:
        return self.state == "succeeded"

    def task(self, name: str) -> dict[str, Any]:
        for t in self.tasks:
            if t["name"] == name:
                return t
        raise NotFound(f"no task '{name}' in run {self.run_id}")

    def output(self, task: str, name: str) -> Path:
        """Where an output file of a task is (runs executed here)."""
        if self.data is None:
            raise NotFound("outputs are on the boss's machine: download them with its API")
        t = self.task(task)
        if name not in t["outputs"]:
            raise NotFound(
                f"task '{task}' has no output '{name}' (it has: {', '.join(t['outputs']) or 'none'})"
            )
        run = t.get("source_run") or self.run_id
        return self.data / output_prefix(run, task) / name


def _result(client: Any, run_id: int, data: Path | None) -> Result:
    view = client.run(run_id)
    return Result(
        run_id=run_id,
        name=view["name"],
        state=view["state"],
        counts=view["counts"],
        value=view.get("result"),
        results=client.results(run_id),
        tasks=client.tasks(run_id),
        data=data,
    )


class Handle:
    """A run submitted to a boss."""

    def __init__(self, client: Any, run_id: int) -> None:
        self.client = client
        self.run_id = run_id

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.client.run(self.run_id)
        return result

    def wait(self, timeout: float | None = None, interval: float = 0.2) -> Result:
        """Block until the run ends (TimeoutError after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.status()["state"] not in FINAL_STATES:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {self.run_id} still runs after {timeout} s")
            time.sleep(interval)
        return _result(self.client, self.run_id, None)

    def cancel(self) -> int:
        return int(self.client.cancel(self.run_id))


def functions_as_tasks(path: str | os.PathLike[str], run: Run) -> list[str]:
    """Add a task for each plain function of a Python file; their names.

    Each function returns the shell command of the task named after it, or
    a dict of task fields (``{"run": ..., "outputs": [...]}``).
    """
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"{path}: no such file (--defs names a Python file of task functions)")
    spec = importlib.util.spec_from_file_location(f"shoal_defs_{file.stem}", file)
    if spec is None or spec.loader is None:
        raise BadInput(f"{path}: cannot be loaded as Python")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise BadInput(f"{path}: {type(e).__name__}: {e}") from None
    names = []
    for name, fn in vars(module).items():
        if name.startswith("_") or not inspect.isfunction(fn) or fn.__module__ != module.__name__:
            continue
        try:
            value = fn()
        except Exception as e:
            raise BadInput(f"{path}: {name}() failed: {type(e).__name__}: {e}") from None
        task_name = name
        if isinstance(value, str):
            run.task(task_name, value)
        elif isinstance(value, dict):
            fields = dict(value)
            command = fields.pop("run", None)
            run.task(task_name, command, **fields)
        else:
            raise BadInput(
                f"{path}: {name}() must return a command string or a dict of task fields"
            )
        names.append(task_name)
    if not names:
        raise BadInput(f"{path}: defines no task functions")
    return names

"""Bounded input: every limit of a task file refused in one line, and the alias bomb."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shoal import spec
from shoal.exceptions import SpecError
from tests.conftest import SRC, write

# The "billion laughs": 9^9 strings from a few hundred bytes, under a field
# that takes any mapping ('requires'), so that nothing before the expansion
# refuses it.
BOMB = """\
tasks:
  - name: t
    run: echo hi
    requires:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
      h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
      i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def refusal(text: str, name: str = "t.yaml") -> str:
    with pytest.raises(SpecError) as info:
        spec.parse_text(text, path=name)
    message = str(info.value)
    assert "\n" not in message
    return message


def task_with(field: str) -> str:
    return f"tasks:\n  - name: t\n    run: echo\n    {field}\n"


CUBE = [list(range(1000))] * 3

LIMITS = {
    "matrix of a billion": (
        "tasks:\n  - name: t-{a}-{b}-{c}\n"
        f"    matrix: {{a: {CUBE[0]}, b: {CUBE[1]}, c: {CUBE[2]}}}\n    run: echo\n",
        "t.yaml:3: task 't-{a}-{b}-{c}': the run would have more than 500,000 tasks "
        "(this entry makes 1,000,000,000)",
    ),
    "timeout .inf": (task_with("timeout: .inf"), "t.yaml:4: task 't': 'timeout': inf is not"),
    "timeout .nan": (task_with("timeout: .nan"), "t.yaml:4: task 't': 'timeout': nan is not"),
    "timeout Infinity": (
        task_with("timeout: Infinity"),
        "t.yaml:4: task 't': 'timeout': bad duration 'Infinity': it must be a finite number",
    ),
    "timeout 1e400": (
        task_with("timeout: 1e400"),
        "t.yaml:4: task 't': 'timeout': bad duration '1e400': it must be a finite number",
    ),
    "timeout of years": (
        task_with("timeout: 1000d"),
        "t.yaml:4: task 't': 'timeout': bad duration '1000d': the most is 366 days",
    ),
    "integer past 64 bits": (
        task_with(f"env: {{X: {2**64}}}"),
        "t.yaml:4: task 't': 'X': 18446744073709551616 is out of range",
    ),
    "integer of 5000 digits": (
        task_with("env: {X: " + "9" * 5000 + "}"),
        "t.yaml:4: task 't': the number '99999",
    ),
    "slots": (task_with("slots: 1000000"), "t.yaml:4: task 't': 'slots' must be at most 100,000"),
    "retries": (
        task_with("retries: 5000"),
        "t.yaml:4: task 't': 'retries' must be at most 1,000",
    ),
    "priority": (
        task_with("priority: -3000000000"),
        "t.yaml:4: task 't': 'priority' must be at least -1000000000",
    ),
    "task name": (
        "tasks:\n  - name: " + "x" * 201 + "\n    run: echo\n",
        "t.yaml:2: task '" + "x" * 59 + "…': the name has 201 characters; the most is 200",
    ),
    "task name after expansion": (
        "tasks:\n  - name: t-{i}\n    matrix: {i: [" + "y" * 199 + "]}\n    run: echo\n",
        "t.yaml:2: task 't-yyy",
    ),
    "task name of dots": (
        "tasks:\n  - {name: '..', run: echo}\n",
        "t.yaml:2: task '..': bad name: '.' and '..' name no folder of their own",
    ),
    "run name": (
        "name: " + "r" * 201 + "\ntasks:\n  - {name: t, run: echo}\n",
        "t.yaml:1: the run's 'name' has 201 characters; the most is 200",
    ),
    "host name": (
        task_with("host: " + "h" * 201),
        "t.yaml:4: task 't': 'host' must be a host name of at most 200 characters",
    ),
    "command": (
        "tasks:\n  - name: t\n    run: echo " + "z" * 1_000_000 + "\n",
        "t.yaml:3: task 't': a value has 1,000,005 characters; the most is 1,000,000",
    ),
    "YAML nesting": (
        task_with("env: " + "[" * 100_000 + "]" * 100_000),
        "t.yaml:4: lists and mappings nest deeper than 32 levels",
    ),
    "requires holds a list": (
        task_with("requires: {gpu: [1, 2]}"),
        "t.yaml:4: task 't': 'requires' must be a mapping of labels to plain values",
    ),
    "flow nesting": (
        "tasks:\n  - {name: a, run: echo}\nflow: '" + "(" * 5000 + "a" + ")" * 5000 + "'\n",
        "t.yaml:3: the flow nests '(' too deep",
    ),
    "alias loop": (
        task_with("env: &a {X: *a}"),
        "t.yaml:4: task 't': an alias refers to a node that contains it",
    ),
}


@pytest.mark.parametrize("case", list(LIMITS))
def test_each_limit_is_refused_in_one_line(case: str) -> None:
    text, expected = LIMITS[case]
    assert refusal(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"tasks": [{"name": "t", "run": "x", "timeout": Infinity}]}', "bad duration 'Infinity'"),
        ('{"tasks": [{"name": "t", "run": "x", "timeout": NaN}]}', "it must be a finite number"),
        ('{"tasks": [{"name": "t", "run": "x", "timeout": 1e400}]}', "bad duration '1e400'"),
        (
            '{"tasks": [{"name": "t", "run": "x", "env": {"X": ' + "9" * 5000 + "}}]}",
            "out of range",
        ),
        (
            '{"tasks": [{"name": "t", "run": "x", "env": ' + "[" * 50_000 + "]" * 50_000 + "}]}",
            "nest deeper than 32",
        ),
    ],
)
def test_json_files_are_bounded_too(text: str, expected: str) -> None:
    assert expected in refusal(text, "t.json")


def test_a_submitted_run_is_held_to_the_same_bounds() -> None:
    # What the boss runs on POST /v1/runs.
    deep: object = "x"
    for _ in range(40):
        deep = [deep]
    bad = [
        ({"name": "r", "tasks": [{"name": "t" * 201, "run": ["x"]}]}, "the most is 200"),
        ({"name": "r", "tasks": [{"name": "t", "run": ["x"], "timeout": float("inf")}]}, "finite"),
        ({"name": "r", "tasks": [{"name": "t", "run": ["x"], "retries": 2**70}]}, "out of range"),
        ({"name": "r", "tasks": [{"name": "t", "run": ["x"], "env": {"X": deep}}]}, "nest deeper"),
        (
            {
                "name": "r",
                "tasks": [
                    {
                        "name": "t-{a}-{b}-{c}",
                        "run": ["x"],
                        "matrix": dict(zip("abc", CUBE, strict=True)),
                    }
                ],
            },
            "more than 500,000 tasks",
        ),
    ]
    for data, expected in bad:
        with pytest.raises(SpecError, match=expected):
            spec.spec_from_dict(data)


@pytest.mark.parametrize(
    "task",
    [
        {"name": "t", "run": "echo \0"},
        {"name": "t", "run": "echo", "env": {"A": "x\0y"}},
        {"name": "t", "run": "echo", "env": {"A\0": "x"}},
        {"name": "t", "run": "echo", "outputs": ["o\0.txt"]},
    ],
)
def test_a_nul_character_is_refused_before_anything_runs(task: dict[str, object]) -> None:
    # It would pass the spec and fail on the worker: exec and open refuse it.
    with pytest.raises(SpecError, match=r"NUL character"):
        spec.spec_from_dict({"tasks": [task]})
    with pytest.raises(SpecError, match=r"^tasks.yaml:\d+: task 't': .*NUL character"):
        spec.parse_text(json.dumps({"tasks": [task]}), path="tasks.yaml")


def test_a_matrix_of_100000_tasks_is_within_bounds() -> None:
    text = f"tasks:\n  - name: t-{{i}}\n    matrix: {{i: {list(range(100_000))}}}\n    run: echo {{i}}\n"
    assert len(spec.parse_text(text, path="big.yaml").tasks) == 100_000


def test_a_file_past_10_mb_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as f:
        f.write("tasks:\n  - {name: t, run: echo}\n")
        f.write("#" * (11 * 1024 * 1024))
    with pytest.raises(
        SpecError, match=r"big.yaml: is 11.5 MB; a task file may have at most 10 MB"
    ):
        spec.load(big)


PEAK = textwrap.dedent(
    """
    import json, resource, sys
    from shoal import spec
    from shoal.exceptions import SpecError
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        run = spec.load(sys.argv[1])
        json.dumps(run.to_dict())  # what a submission sends
        outcome = "accepted"
    except SpecError as e:
        outcome = str(e)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "growth_kb": after - before}))
    """
)


def test_the_alias_bomb_is_refused_without_growing_memory(tmp_path: Path) -> None:
    bomb = write(tmp_path / "bomb.yaml", BOMB)
    proc = subprocess.run(
        [sys.executable, "-c", PEAK, str(bomb)],
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=120,  # generous: refused at once now, and the old code never ended
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert re.match(rf"{bomb}:\d+: task 't': the document expands to more than", seen["outcome"])
    assert seen["growth_kb"] < 20 * 1024, seen

"""Task files: what is accepted, how it expands, and every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoal import spec
from shoal.exceptions import SpecError
from tests.conftest import write


def load(tmp_path: Path, text: str, name: str = "tasks.yaml") -> spec.RunSpec:
    return spec.load(write(tmp_path / name, text))


def error(tmp_path: Path, text: str, name: str = "tasks.yaml") -> SpecError:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text, name)
    message = str(info.value)
    assert "\n" not in message
    return info.value


def test_design_example_expands_matrix_globs_and_defaults(tmp_path: Path) -> None:
    run = load(
        tmp_path,
        """
name: sweep
env: {MODE: fast}
defaults: {retries: 1, timeout: 30m}
tasks:
  - name: prep
    run: python prep.py > data.csv
    outputs: [data.csv]
  - name: sim-{seed}
    matrix: {seed: [1, 2, 3]}
    after: [prep]
    run: python sim.py --seed {seed} < inputs/prep/data.csv > out.json
    outputs: [out.json]
  - name: total
    after: ["sim-*"]
    run: cat inputs/*/out.json | python total.py
""",
    )
    assert run.name == "sweep"
    assert run.env == {"MODE": "fast"}
    assert [t.name for t in run.tasks] == ["prep", "sim-1", "sim-2", "sim-3", "total"]
    sim2 = run.tasks[2]
    assert sim2.run == ("python sim.py --seed 2 < inputs/prep/data.csv > out.json",)
    assert sim2.after == ("prep",)
    assert sim2.retries == 1 and sim2.timeout == 1800.0
    assert run.tasks[-1].after == ("sim-1", "sim-2", "sim-3")


def test_every_task_field_is_read(tmp_path: Path) -> None:
    run = load(
        tmp_path,
        """
tasks:
  - name: a
    run: [make, make check]
    download: fetch.sh
    upload: [push.sh]
    cleanup: rm -rf tmp
    inputs: [datasets/big.csv]
    outputs: ["*.json"]
    env: {N: 3, DEBUG: true}
    timeout: 1h30m
    retries: 2
    slots: 4
    priority: 7
    host: node1
    requires: {gpu: true}
""",
    )
    t = run.tasks[0]
    assert t.run == ("make", "make check")
    assert t.download == ("fetch.sh",) and t.upload == ("push.sh",) and t.cleanup == ("rm -rf tmp",)
    assert t.inputs == ("datasets/big.csv",) and t.outputs == ("*.json",)
    assert t.env == {"N": "3", "DEBUG": "true"}
    assert t.timeout == 5400.0
    assert (t.retries, t.slots, t.priority, t.host) == (2, 4, 7, "node1")
    assert t.requires == {"gpu": True}


def test_matrix_of_two_keys_and_braces(tmp_path: Path) -> None:
    run = load(
        tmp_path,
        """
tasks:
  - name: t-{a}-{b}
    matrix: {a: [1, 2], b: [x, y]}
    run: echo {a}{b} ${HOME} {{literal}}
""",
    )
    assert [t.name for t in run.tasks] == ["t-1-x", "t-1-y", "t-2-x", "t-2-y"]
    assert run.tasks[0].run == ("echo 1x ${HOME} {literal}",)


def test_bare_json_list_and_name_from_file(tmp_path: Path) -> None:
    run = load(
        tmp_path,
        '[{"name": "a", "run": "true"}, {"name": "b", "run": "true", "after": "a"}]',
        "batch.json",
    )
    assert run.name == "batch"
    assert run.tasks[1].after == ("a",)


def test_bundle_folder_is_resolved_next_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    run = load(tmp_path, "bundle: code\nsetup: pip install x\ntasks: [{name: a, run: 'true'}]")
    assert run.bundle == tmp_path / "code"
    assert run.setup == "pip install x"


@pytest.mark.parametrize(
    ("text", "line", "task", "words"),
    [
        ("tasks:\n  - name: a\n    run: [x\n", 4, None, "invalid YAML"),
        ("tasks:\n  - name: a\n    run: x\n    retires: 3\n", 4, "a", "did you mean 'retries'"),
        (
            "tasks:\n  - name: a\n    run: x\n  - name: a\n    run: y\n",
            4,
            "a",
            "duplicate task name",
        ),
        (
            "tasks:\n  - name: a\n    run: x\n    after: [prpe]\n",
            4,
            "a",
            "'after' names no task 'prpe'",
        ),
        ("tasks:\n  - name: a\n    run: x\n    after: ['z*']\n", 4, "a", "matches no task"),
        (
            "tasks:\n  - name: a\n    run: x\n    after: [b]\n  - name: b\n    run: y\n    after: [a]\n",
            2,
            "a",
            "dependency cycle a -> b -> a",
        ),
        (
            "tasks:\n  - name: a-{i}\n    matrix: [1, 2]\n    run: x\n",
            3,
            "a-{i}",
            "mapping of lists",
        ),
        ("tasks:\n  - name: a-{i}\n    matrix: {i: 3}\n    run: x\n", 3, "a-{i}", "non-empty list"),
        ("tasks:\n  - name: a\n    run: x\n    timeout: soon\n", 4, "a", "bad duration 'soon'"),
        ("tasks:\n  - name: a\n    run: x\n    timeout: -5\n", 4, "a", "more than zero"),
        (
            "bundle: ./nowhere\ntasks:\n  - name: a\n    run: x\n",
            1,
            None,
            "bundle folder './nowhere' does not exist",
        ),
        ("tasks:\n  - name: a b\n    run: x\n", 2, "a b", "bad name"),
        ("tasks:\n  - name: a\n", 2, "a", "no 'run'"),
        ("tasks:\n  - name: a\n    run: x\n    slots: 0\n", 4, "a", "at least 1"),
        ("taks:\n  - name: a\n", 1, None, "did you mean 'tasks'"),
    ],
)
def test_bad_input_names_file_line_and_task(
    tmp_path: Path, text: str, line: int, task: str | None, words: str
) -> None:
    e = error(tmp_path, text)
    assert e.path == str(tmp_path / "tasks.yaml")
    assert e.line == line, str(e)
    assert e.task == task
    assert words in str(e)
    assert str(e).startswith(f"{tmp_path / 'tasks.yaml'}:{line}: ")


def test_longer_cycle_is_printed_in_order(tmp_path: Path) -> None:
    e = error(
        tmp_path,
        "tasks:\n- {name: a, run: x, after: [c]}\n- {name: b, run: x, after: [a]}\n- {name: c, run: x, after: [b]}\n",
    )
    assert "a -> c -> b -> a" in str(e)


def test_json_errors_point_at_lines(tmp_path: Path) -> None:
    e = error(tmp_path, '[{"name": "a", "run": "x"},\n {"name": "a", "run": "y"}]', "t.json")
    assert e.line == 2 and "duplicate" in str(e)
    e = error(tmp_path, '[{"name": "a",,}]', "t.json")
    assert e.line == 1 and "invalid JSON" in str(e)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        spec.load(tmp_path / "nope.yaml")
    assert "empty" in str(error(tmp_path, ""))
    assert "nothing to run" in str(error(tmp_path, "tasks: []"))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        ("90", 90.0),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert spec.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5 parsecs", "m", "10x", True, None, [1], "1h 30x"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        spec.parse_duration(value)


def test_submitted_form_round_trips() -> None:
    run = spec.parse_text(
        "tasks:\n- {name: a, run: x, timeout: 5m}\n- {name: b, run: y, after: [a], requires: [gpu]}\n"
    )
    again = spec.spec_from_dict(run.to_dict())
    assert [t.to_dict() for t in again.tasks] == [t.to_dict() for t in run.tasks]

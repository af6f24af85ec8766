"""A new user's mistakes in a task file, caught before anything runs, each at its line.

A field indented under ``matrix:``, a misspelt ``{placeholder}``, a number
where a command belongs, a misnamed operand: each used to pass the checks and
make every task fail at run time. Braces that are the shell's stay as they are.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import shoal
from shoal import spec
from shoal.exceptions import SpecError
from tests.conftest import write


def load(tmp_path: Path, text: str) -> spec.RunSpec:
    return spec.load(write(tmp_path / "sweep.yaml", text))


def error(tmp_path: Path, text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(tmp_path, text)
    assert "\n" not in str(info.value)
    return info.value


SWEEP = """\
tasks:
  - name: prep
    run: python prep.py > data.csv
  - name: sim-{lr}
    matrix:
      lr: [0.1, 0.2]
%s
    run: python sim.py --lr {lr}
"""


def test_after_indented_under_matrix_is_named_at_its_line(tmp_path: Path) -> None:
    e = error(tmp_path, SWEEP % "      after: [prep]")
    assert (e.line, e.task) == (7, "sim-{lr}")
    assert "matrix key 'after' is used by no field of the task (indented too far?" in str(e)
    # Where it belongs, the same file loads and the dependency is there.
    run = load(tmp_path, SWEEP % "    after: [prep]")
    assert [t.after for t in run.tasks] == [(), ("prep",), ("prep",)]


@pytest.mark.parametrize(
    ("matrix", "words"),
    [
        ("{lr: [0.1], rep: [1]}", "matrix key 'rep' is used by no field of the task (put {rep} in"),
        ("{lr: [0.1], my-key: [1]}", "matrix key 'my-key' is used by no field"),
        ("{lr: [0.1], 7: [1]}", "matrix key '7' is used by no field"),
    ],
)
def test_a_matrix_key_no_field_uses_is_refused(tmp_path: Path, matrix: str, words: str) -> None:
    e = error(tmp_path, f"tasks:\n  - name: t-{{lr}}\n    matrix: {matrix}\n    run: x\n")
    assert (e.line, e.task) == (3, "t-{lr}")
    assert words in str(e)


def test_a_key_used_in_any_field_counts(tmp_path: Path) -> None:
    text = """\
tasks:
  - {name: prep-a, run: x}
  - name: t-{i}
    matrix: {i: [1, 2], part: [a], out: [o], n: [3], gpu: [a100]}
    run: x
    after: ["prep-{part}"]
    outputs: ["{out}.json"]
    env: {N: "{n}"}
    requires: {gpu: "{gpu}"}
"""
    # Dropped from its only field, a key is caught; used anywhere, it counts.
    e = error(tmp_path, text.replace("{out}.json", "o.json"))
    assert (e.line, e.task) == (4, "t-{i}") and "matrix key 'out' is used by no field" in str(e)
    run = load(tmp_path, text)
    t = run.tasks[1]
    assert (t.name, t.after, t.outputs, t.env, t.requires) == (
        "t-1",
        ("prep-a",),
        ("o.json",),
        {"N": "3"},
        {"gpu": "a100"},
    )


def test_a_misspelt_placeholder_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    text = (
        "tasks:\n  - name: d-{depth}\n    matrix: {depth: [1, 2]}\n"
        "    run: python fit.py --depth {dept}\n"
    )
    e = error(tmp_path, text)
    assert (e.line, e.task) == (4, "d-{depth}")
    assert "'run' has '{dept}', which is no matrix key (did you mean '{depth}'?)" in str(e)


def test_a_placeholder_far_from_any_key_says_how_to_write_braces(tmp_path: Path) -> None:
    text = "tasks:\n  - name: d-{depth}\n    matrix: {depth: [1, 2]}\n    run: awk '{print}' data\n"
    e = error(tmp_path, text)
    assert "'run' has '{print}', which is no matrix key (matrix keys: depth; " in str(e)
    assert "write '{{print}}' for literal braces)" in str(e)
    run = load(tmp_path, text.replace("{print}", "{{print}}"))
    assert run.tasks[0].run == ("awk '{print}' data",)


def test_placeholders_are_checked_in_every_field_at_their_own_line(tmp_path: Path) -> None:
    e = error(
        tmp_path,
        "tasks:\n  - name: t-{seed}\n    matrix: {seed: [1]}\n    run: x\n"
        "    env:\n      A: one\n      B: '{sed}'\n",
    )
    assert (
        e.line == 7
        and "'env' has '{sed}', which is no matrix key (did you mean '{seed}'?)" in str(e)
    )
    e = error(
        tmp_path,
        "defaults:\n  outputs: ['{sede}.json']\n"
        "tasks:\n  - name: t-{seed}\n    matrix: {seed: [1]}\n    run: x\n",
    )
    assert e.line == 2 and e.task == "t-{seed}"
    assert "'outputs' (from defaults) has '{sede}', which is no matrix key" in str(e)


def test_shell_braces_stay_as_they_are(tmp_path: Path) -> None:
    shell = (
        "echo ${HOME} $HOME ${unset} {{lit}} {a,b} {1..3}; awk '{print $1}' f; find -exec ls {} +"
    )
    run = load(
        tmp_path,
        f'tasks:\n  - name: m-{{i}}\n    matrix: {{i: [1]}}\n    run: "{shell} {{i}}"\n'
        f"  - name: plain\n    run: \"{shell} {{word}} awk '{{print}}'\"\n",
    )
    # In a matrix task only {i} is replaced and '{{' is a brace; without a
    # matrix every brace is the command's own.
    assert run.tasks[0].run == (shell.replace("{{lit}}", "{lit}") + " 1",)
    assert run.tasks[1].run == (f"{shell} {{word}} awk '{{print}}'",)
    # The boss re-checks the expanded run, whose braces are literal now.
    again = spec.spec_from_dict(run.to_dict())
    assert [t.run for t in again.tasks] == [t.run for t in run.tasks]
    # And a typo beside them is still caught.
    e = error(
        tmp_path, f'tasks:\n  - name: m-{{i}}\n    matrix: {{i: [1]}}\n    run: "{shell} {{ii}}"\n'
    )
    assert "'{ii}', which is no matrix key (did you mean '{i}'?)" in str(e)


def test_the_python_api_gets_the_same_checks() -> None:
    run = shoal.Run("squares")
    run.task("sq-{n}", "echo $(( {nn} * {n} ))", matrix={"n": [1, 2]})
    with pytest.raises(
        SpecError, match=r"'run' has '\{nn\}', which is no matrix key \(did you mean '\{n\}'\?\)"
    ):
        run.spec()
    run = shoal.Run("squares")
    run.task("sq-{n}", "echo", matrix={"n": [1, 2], "after": ["x"]})
    with pytest.raises(SpecError, match="matrix key 'after' is used by no field"):
        run.spec()


@pytest.mark.parametrize("delay", ["0s", "0", 0, 0.0, "0ms", "0m"])
def test_a_retry_delay_of_zero_is_no_delay(tmp_path: Path, delay: object) -> None:
    run = load(tmp_path, f"tasks:\n  - {{name: a, run: x, retries: 2, retry_delay: {delay!r}}}\n")
    assert run.tasks[0].retry_delay == 0.0
    assert spec.parse_duration(delay, zero=True) == 0.0


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("retry_delay", "-1", "'retry_delay': bad duration -1: it must be zero or more"),
        ("retry_delay", "'-1s'", "'retry_delay': bad duration '-1s'"),
        ("timeout", "0s", "'timeout': bad duration '0s': it must be more than zero"),
    ],
)
def test_a_negative_delay_and_a_zero_timeout_stay_refused(
    tmp_path: Path, field: str, value: str, words: str
) -> None:
    e = error(tmp_path, f"tasks:\n  - name: a\n    run: x\n    {field}: {value}\n")
    assert (e.line, e.task) == (4, "a") and words in str(e)
    # A zero delay is accepted (this test fails on a loader that refuses it).
    assert (
        load(tmp_path, "tasks:\n  - {name: a, run: x, retry_delay: 0s}\n").tasks[0].retry_delay == 0
    )


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("[make, 3]", "'run' entry 2 is the number 3, not a command (quote it if it is one)"),
        ("[1.5]", "'run' entry 1 is the number 1.5, not a command"),
        ("[make, true]", "'run' entry 2 is true, not a command"),
        ("[make, [a, b]]", "'run' entry 2 is a list of 2, not a command"),
        ("[make, null]", "'run' entry 2 is empty, not a command"),
    ],
)
def test_a_run_list_holds_commands_only(tmp_path: Path, value: str, words: str) -> None:
    e = error(tmp_path, f"tasks:\n  - name: a\n    run: {value}\n")
    assert (e.line, e.task) == (3, "a") and words in str(e)


def test_a_number_in_another_command_list_is_refused_too(tmp_path: Path) -> None:
    e = error(tmp_path, "tasks:\n  - name: a\n    run: make\n    cleanup: [rm x, 0]\n")
    assert e.line == 4 and "'cleanup' entry 2 is the number 0, not a command" in str(e)
    e = error(tmp_path, "setup: [pip install x, 2]\ntasks:\n  - {name: a, run: x}\n")
    assert e.line == 1 and "'setup' entry 2 is the number 2, not a command" in str(e)


@pytest.mark.parametrize(
    ("reduce", "words"),
    [
        ("[chunk-1, chunck-2]", "'reduce' names no task 'chunck-2' (did you mean 'chunk-2'?)"),
        ("['chnk-*']", "'reduce' pattern 'chnk-*' matches no task"),
    ],
)
def test_a_reduction_names_its_own_field(tmp_path: Path, reduce: str, words: str) -> None:
    e = error(
        tmp_path,
        "tasks:\n  - name: chunk-{i}\n    matrix: {i: [1, 2]}\n    run: echo {i}\n"
        f"  - name: prep\n    run: x\n  - name: total\n    after: [prep]\n    reduce: {reduce}\n",
    )
    assert (e.line, e.task) == (9, "total") and words in str(e)
    assert "'after'" not in str(e)

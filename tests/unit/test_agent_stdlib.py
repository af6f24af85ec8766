"""The worker agent needs nothing but the standard library, on Python 3.11 and newer.

3.11 is what shoal claims for the agent because it is what CI can test: the
oldest Python Debian 12 has (``.ci/run`` installs it). The agent's modules
keep to Python 3.8's syntax, and any older Python found here (a developer's
pyenv) is tried too, but nothing older than 3.11 is claimed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shoal import protocol as p
from shoal.agent.runner import command_argv, parse_result
from shoal.launch.zipapp import AGENT_MODULES
from tests.needs import needs

SRC = Path(__file__).resolve().parents[2] / "src"
AGENT_FILES = [SRC / name for name in AGENT_MODULES]
CLAIMED = (3, 11)  # the oldest Python the agent claims to run on


def test_agent_imports_with_third_party_packages_unimportable() -> None:
    # -S: no site-packages at all; -I: ignore PYTHON* variables and the user site.
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
        "import shoal.agent, shoal.agent.worker, shoal.agent.runner, shoal.agent.client, shoal.protocol\n"
        "third = [m for m in sys.modules if m.split('.')[0] in "
        "('yaml', 'sqlalchemy', 'starlette', 'uvicorn', 'typer', 'rich', 'httpx', 'click', 'anyio')]\n"
        "assert not third, third\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("path", AGENT_FILES, ids=lambda f: str(f.relative_to(SRC)))
def test_agent_source_keeps_to_python_38_syntax(path: Path) -> None:
    ast.parse(path.read_text(), filename=str(path), feature_version=(3, 8))


def _pythons() -> dict[tuple[int, int], str]:
    """Interpreters on this machine from 3.8 to the claimed one, by version."""
    candidates = [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))]
    for minor in range(8, CLAIMED[1] + 1):
        candidates += [
            w for w in (shutil.which(f"python3.{minor}"), f"/usr/bin/python3.{minor}") if w
        ]
    found: dict[tuple[int, int], str] = {}
    for exe in candidates:
        if not Path(exe).exists():
            continue
        probe = subprocess.run(
            [exe, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            version = tuple(int(v) for v in probe.stdout.split())
            if (3, 8) <= version <= CLAIMED:
                found.setdefault((version[0], version[1]), exe)
    return found


PYTHONS = _pythons()


@needs(f"Python {CLAIMED[0]}.{CLAIMED[1]} (.ci/run installs Debian's)", CLAIMED in PYTHONS)
def test_agent_runs_on_the_oldest_python_it_claims() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(SRC)!r})\n"
        "from shoal.agent.start import main\n"
        "sys.exit(main(['--help']))\n"
    )
    for version, exe in sorted(PYTHONS.items()):  # the claimed one, and any older one here
        proc = subprocess.run([exe, "-I", "-S", "-c", code], capture_output=True, text=True)
        assert proc.returncode == 0, f"Python {version}: {proc.stderr}"
        assert "--boss" in proc.stdout, f"Python {version}: {proc.stdout}"


def test_simple_commands_skip_the_shell_and_others_use_it() -> None:
    argv = command_argv(["true"])
    assert argv[0].endswith("/true") and len(argv) == 1
    assert command_argv(["echo hello world"])[1:] == ["hello", "world"]
    for cmd in [
        "echo $HOME",
        "a | b",
        "x > y",
        "cd /tmp",
        "FOO=1 env",
        "echo 'q'",
        "ls *.py",
        "no-such-command-xyz",
    ]:
        argv = command_argv([cmd])
        assert argv[-2:] == ["-c", cmd], cmd
    assert command_argv(["true", "false"])[-1] == "true\nfalse"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("3.5", 3.5),
        ('{"a": 1}', {"a": 1}),
        ("[1, 2]", [1, 2]),
        ("hello world", "hello world"),
        ("", None),
        ("  ", None),
    ],
)
def test_results_from_text(text: str, value: object) -> None:
    assert parse_result(text) == value


def test_wire_messages_round_trip() -> None:
    a = p.Assignment(
        attempt_id=1,
        run_id=2,
        run="r",
        task="t",
        number=1,
        fetch=[p.Fetch("x", "y")],
        env={"A": "1"},
    )
    resp = p.SyncResponse(assignments=[a], cancel=[5])
    assert p.SyncResponse.from_dict(resp.to_dict()) == resp
    req = p.SyncRequest(
        worker_id=3,
        finished=[p.Report(attempt_id=1, outcome=p.SUCCEEDED, result={"k": [1]})],
        running=[2],
    )
    assert p.SyncRequest.from_dict(req.to_dict()) == req
    # Fields a newer peer adds are ignored, not fatal.
    assert (
        p.Report.from_dict({"attempt_id": 1, "outcome": "failed", "future_field": 1}).attempt_id
        == 1
    )

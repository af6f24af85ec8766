"""What users wrote is printed as they wrote it: no Rich markup, no emoji codes."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import shoal, write

LITERAL = ":x: [bold]y[/bold]"


def test_a_result_prints_literally(tmp_path: Path) -> None:
    result = json.dumps(json.dumps(LITERAL))  # the JSON value, quoted for the shell
    spec = {"tasks": [{"name": "marked", "run": f"printf '%s' {result} > \"$SHOAL_RESULT\""}]}
    write(tmp_path / "t.json", json.dumps(spec))
    ran = shoal("run", "t.json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert LITERAL in ran.stdout  # the run's own summary
    for command in ("tasks", "results"):
        shown = shoal(command, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert LITERAL in shown.stdout, shown.stdout
        assert "❌" not in shown.stdout

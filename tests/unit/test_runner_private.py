"""What an attempt leaves on the worker's disk is its owner's alone, and no credential leaks in."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal import protocol as p
from shoal.agent import runner as r


def test_an_embedded_runner_gives_its_task_no_credential_and_private_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An agent inside another program (the Python API, a test) that has the token.
    monkeypatch.setenv("SHOAL_TOKEN", "the-boss-token")
    monkeypatch.setenv("SHOAL_TOKEN_FILE", str(tmp_path / "token"))
    old = os.umask(0o022)
    runner = r.Runner(None, str(tmp_path), "w")  # type: ignore[arg-type]
    try:
        a = p.Assignment(
            attempt_id=1,
            run_id=1,
            run="r",
            task="t",
            number=1,
            stdin="a secret on standard input\n",
            run_cmds=[
                'stat -c "%a %n" "$SHOAL_WORKSPACE.log" "$SHOAL_WORKSPACE.stdin"'
                " && env | grep -c SHOAL_TOKEN || true"
            ],
        )
        report = runner.run(r.Attempt(a))
    finally:
        runner.close()
        os.umask(old)
    assert report.outcome == p.SUCCEEDED, report.cause
    lines = (report.log or "").splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["600", "600"]
    assert lines[2] == "0"  # no SHOAL_TOKEN nor SHOAL_TOKEN_FILE in the task's environment

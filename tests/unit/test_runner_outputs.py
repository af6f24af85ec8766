"""A task's outputs: only files inside its workspace are uploaded, links included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal import protocol as p
from shoal.agent import runner as r


class RecordingClient:
    """Stands in for the boss: remembers what would be uploaded."""

    def __init__(self) -> None:
        self.uploads: dict[str, bytes] = {}

    def upload_output(self, attempt_id: int, name: str, local: str) -> None:
        with open(local, "rb") as f:
            self.uploads[name] = f.read()

    def upload_log(self, attempt_id: int, local: str, patient: bool = True) -> None:
        pass


def run(tmp_path: Path, cmds: list[str], outputs: list[str]) -> tuple[p.Report, RecordingClient]:
    client = RecordingClient()
    runner = r.Runner(client, str(tmp_path / "work"), "w")  # type: ignore[arg-type]
    assignment = p.Assignment(
        attempt_id=1, run_id=1, run="r", task="t", number=1, run_cmds=cmds, outputs=outputs
    )
    try:
        return runner.run(r.Attempt(assignment)), client
    finally:
        runner.close()


def test_a_link_to_a_file_outside_fails_the_task_and_uploads_nothing(tmp_path: Path) -> None:
    report, client = run(tmp_path, ["ln -s /etc/passwd out.txt"], ["out.txt"])
    assert report.outcome == p.FAILED
    assert report.cause == "output 'out.txt' is a link to '/etc/passwd', outside the workspace"
    assert client.uploads == {}


def test_a_glob_that_matches_a_link_outside_uploads_nothing(tmp_path: Path) -> None:
    report, client = run(tmp_path, ["echo mine > a.txt", "ln -s /etc/passwd b.txt"], ["*.txt"])
    assert report.outcome == p.FAILED
    assert report.cause == "output 'b.txt' is a link to '/etc/passwd', outside the workspace"
    assert client.uploads == {}  # not even a.txt: the attempt failed


def test_links_may_stay_inside_the_workspace_but_not_lead_out(tmp_path: Path) -> None:
    report, client = run(
        tmp_path,
        ["mkdir -p d", "echo real > d/a.txt", "ln -s d/a.txt b.txt", "ln -s d e"],
        ["b.txt", "e/a.txt"],
    )
    assert report.outcome == p.SUCCEEDED, report.cause
    assert client.uploads == {"b.txt": b"real\n", "e/a.txt": b"real\n"}
    report, client = run(tmp_path, ["ln -s /etc etc"], ["etc/passwd"])
    assert report.cause == (
        "output 'etc/passwd' leads through a link to '/etc/passwd', outside the workspace"
    )
    assert client.uploads == {}


def test_real_output_checks_the_resolved_path(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "f").write_text("x")
    os.symlink(ws / "f", ws / "inside")
    os.symlink(ws / "chain", ws / "loop-start")
    os.symlink("/etc/passwd", ws / "chain")
    # The workspace itself reached through a link is still the workspace.
    os.symlink(ws, tmp_path / "alias")
    roots = [os.path.realpath(ws)]
    assert r.real_output(str(ws / "inside"), str(ws), roots) == os.path.realpath(ws / "f")
    assert r.real_output(str(tmp_path / "alias" / "f"), str(tmp_path / "alias"), roots)
    with pytest.raises(r.OutputRefused, match="'loop-start' is a link to '/etc/passwd'"):
        r.real_output(str(ws / "loop-start"), str(ws), roots)
    # A sibling folder whose name starts with the workspace's is not inside it.
    (tmp_path / "ws2").mkdir()
    (tmp_path / "ws2" / "g").write_text("y")
    os.symlink(tmp_path / "ws2" / "g", ws / "sibling")
    with pytest.raises(r.OutputRefused, match="outside the workspace"):
        r.real_output(str(ws / "sibling"), str(ws), roots)
    with pytest.raises(r.OutputRefused, match=r"^output '/etc/passwd' is outside the workspace$"):
        r.real_output("/etc/passwd", str(ws), roots)

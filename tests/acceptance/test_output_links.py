"""An output that is a link out of the workspace fails its task, as a user sees it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import shoal, shoal_json, write

CAUSE = "output 'out.txt' is a link to '/etc/passwd', outside the workspace"


def test_shoal_run_refuses_an_output_linked_to_etc_passwd(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - {name: leak, run: 'ln -s /etc/passwd out.txt', outputs: [out.txt]}\n",
    )
    proc = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "output 'out.txt' is a link to" in proc.stdout  # the summary's table of failures
    [task] = shoal_json("tasks", cwd=tmp_path)
    assert task["state"] == "failed" and task["cause"] == CAUSE
    table = shoal("tasks", cwd=tmp_path).stdout
    assert "leak" in table and "output 'out.txt' is a link to" in table
    logs = shoal("logs", "leak", cwd=tmp_path)
    assert CAUSE in " ".join(logs.stderr.split())  # however the terminal wraps it
    data = tmp_path / ".shoal" / "data"
    assert not (data / "runs").exists() or not any(p.is_file() for p in (data / "runs").rglob("*"))
    root_line = Path("/etc/passwd").read_text().splitlines()[0]
    assert not any(
        root_line in p.read_text(errors="replace") for p in data.rglob("*") if p.is_file()
    )

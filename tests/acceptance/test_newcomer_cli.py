"""What a new user trips on at the command line (issue 17): found tokens, refused states, clear output."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Procs, shoal, shoal_json, start_boss, write


def test_worker_with_boss_url_finds_the_state_folders_token(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    write(tmp_path / "t.yaml", "name: one\ntasks:\n  - {name: hello, run: echo 1}\n")
    submitted = shoal("submit", "t.yaml", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    # No SHOAL_TOKEN, no --token: the boss's own folder holds it, as for every other command.
    worker = shoal("worker", "--boss", info["url"], "--idle-exit", "2", cwd=tmp_path, timeout=60)
    assert worker.returncode == 0, worker.stderr
    assert "no token" not in worker.stderr
    assert shoal_json("results", "one", cwd=tmp_path) == {"hello": 1}


def test_worker_elsewhere_without_a_token_still_asks_for_one(tmp_path: Path, procs: Procs) -> None:
    info = start_boss(procs, tmp_path)
    away = tmp_path / "away"
    away.mkdir()
    worker = shoal("worker", "--boss", info["url"], cwd=away, timeout=30)
    assert worker.returncode == 2
    assert "no token given" in worker.stderr and "Traceback" not in worker.stderr

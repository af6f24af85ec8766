"""`shoal run` reads its run's view from its own boss, troubles included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shoal.session import LocalSession
from shoal.spec import parse_text
from shoal.statedir import StateDir


def test_the_progress_of_a_run_names_what_its_boss_cannot_write(tmp_path: Path) -> None:
    spec = parse_text("tasks:\n  - {name: slow, run: sleep 0.5}\n")
    seen: list[dict[str, Any]] = []
    with LocalSession(StateDir(tmp_path / ".shoal"), workers=1) as session:
        run_id = session.submit(spec)
        assert session.boss is not None
        session.boss.health.failed("datastore", "cannot write 'x' in its datastore: disk full")
        view = session.wait(run_id, seen.append, interval=0.05)
    assert view["state"] == "succeeded", view
    warned = [w for v in seen for w in v.get("warnings", [])]
    assert warned and warned[0].startswith("cannot write 'x' in its datastore: disk full (since ")

"""`shoal machines`: what shoal started; the keeper holds any provider's machines."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from shoal.launch import procs as handles
from shoal.launch.contract import Pool
from shoal.launch.up import up
from shoal.statedir import StateDir
from tests.conftest import Procs, alive, shoal, shoal_json, start_boss, wait_for, write


def test_shoal_run_records_its_workers_machines_and_workers_name_them(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        # Long enough that both workers register before the run ends, however loaded.
        "tasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6]}\n    run: sleep 2\n",
    )
    assert shoal("run", "t.yaml", "-j", "2", "--slots", "2", cwd=tmp_path).returncode == 0
    listed = shoal_json("machines", cwd=tmp_path)
    assert [(m["name"], m["pool"], m["provider"], m["slots"], m["state"]) for m in listed] == [
        ("local-1", "local", "local", 2, "stopped"),
        ("local-2", "local", "local", 2, "stopped"),
    ]
    assert all(m["owner"].startswith("run:") and m["since"] >= m["requested"] for m in listed)
    table = shoal("machines", cwd=tmp_path)
    assert table.returncode == 0 and "local-1" in table.stdout and "stopped" in table.stdout
    workers = shoal_json("workers", cwd=tmp_path)
    assert sorted((w["name"], w["machine"]) for w in workers) == [
        ("local-1", "local-1"),
        ("local-2", "local-2"),
    ]
    assert "machine" in shoal("workers", cwd=tmp_path).stdout


def _machines(cwd: Path) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in shoal_json("machines", cwd=cwd)}


def test_the_keeper_holds_local_machines_too_and_down_finds_them_after_it_is_killed(
    tmp_path: Path, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    state = StateDir(tmp_path / ".shoal")
    pool = Pool(name="cpu", provider="local", count=2)
    brought = up(state, [pool], boss_url=info["url"], token=info["token"])
    kept = json.loads((state.root / "up.json").read_text())
    procs.extra.append(kept["pid"])  # if the test fails early
    assert [(b.host, b.error) for b in brought] == [("cpu-1", None), ("cpu-2", None)]
    machines = _machines(tmp_path)
    assert {m["state"] for m in machines.values()} == {"running"}
    assert all(m["owner"].startswith("up:") for m in machines.values())

    # A worker that dies is started again by the keeper, whatever its provider.
    first = handles.parse_handle(machines["cpu-1"]["provider_id"])
    assert first is not None
    os.kill(first[0], signal.SIGKILL)
    wait_for(
        lambda: (
            _machines(tmp_path)["cpu-1"]["state"] == "running"
            and _machines(tmp_path)["cpu-1"]["provider_id"] != machines["cpu-1"]["provider_id"]
        ),
        timeout=60,
        what="cpu-1 to be started again",
    )
    assert (
        "cpu-1: worker lost (killed by SIGKILL)" in (state.root / "logs" / "keeper.log").read_text()
    )

    # The keeper is killed; `shoal down` finds its machines in the database.
    os.kill(kept["pid"], signal.SIGKILL)
    wait_for(lambda: not alive(kept["pid"]), what="the keeper to die")
    down = shoal("down", cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert "workers stopped on cpu-1, cpu-2" in down.stdout
    assert {m["state"] for m in _machines(tmp_path).values()} == {"stopped"}
    for m in _machines(tmp_path).values():
        found = handles.parse_handle(m["provider_id"])
        assert found is not None
        wait_for(lambda found=found: not handles.alive(*found), what=f"{m['name']} to stop")
    nothing = shoal("down", cwd=tmp_path)
    assert nothing.returncode == 2 and "no workers are up" in nothing.stderr

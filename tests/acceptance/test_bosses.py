"""Several `shoal boss` processes over one PostgreSQL database, and `shoal run --db`."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from tests.conftest import Procs, boss_info, shoal, shoal_json, wait_for, write

TOKEN = "0123456789abcdef0123456789abcdef"


def _attempts(url: str) -> list[tuple[str, str]]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT t.name, a.state FROM attempts a JOIN tasks t ON t.id = a.task_id"
        ).fetchall()
    return [(str(n), str(s)) for n, s in rows]


def _start_boss(procs: Procs, root: Path, name: str, db: str) -> dict[str, Any]:
    state = root / name
    procs.start(
        "boss",
        "--listen",
        "127.0.0.1:0",
        "--state",
        str(state),
        "--db",
        db,
        "--data",
        str(root / "data"),
        "--lease",
        "4",
        "--token",
        TOKEN,
        cwd=root,
    )
    info: dict[str, Any] = wait_for(lambda: boss_info(state), what=f"boss {name}")
    return info


def test_two_bosses_share_the_work_and_one_dying_loses_nothing(
    tmp_path: Path, procs: Procs, pg_url: str
) -> None:
    first = _start_boss(procs, tmp_path, "b1", pg_url)
    second = _start_boss(procs, tmp_path, "b2", pg_url)
    env = {"SHOAL_TOKEN": TOKEN}
    both = [first["url"], second["url"]]

    rows = shoal_json("bosses", "--boss", second["url"], cwd=tmp_path, env=env)
    assert [b["state"] for b in rows] == ["serving", "serving"]
    assert [b["housekeeper"] for b in rows] == [True, False]  # the first to come

    write(
        tmp_path / "many.yaml",
        "name: many\n"
        "tasks:\n"
        "  - name: t-{i}\n"
        f"    matrix: {{i: {list(range(120))}}}\n"
        "    run: sleep 0.3; echo {i} > out.txt; echo {i}\n"
        "    outputs: [out.txt]\n",
    )
    proc = shoal("submit", "-q", "many.yaml", "--boss", first["url"], cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()

    # Half the workers know the first boss first, half the second; each
    # falls over to the other when its boss goes away.
    for i in range(4):
        order = both if i % 2 == 0 else both[::-1]
        procs.start(
            "worker",
            "--boss",
            ",".join(order),
            "--slots",
            "2",
            "--name",
            f"w{i}",
            cwd=tmp_path,
            env=env,
        )

    def done() -> int:
        view = shoal_json("status", run_id, "--boss", second["url"], cwd=tmp_path, env=env)
        return int(view["counts"].get("succeeded", 0))

    wait_for(lambda: done() >= 30, timeout=60, what="a quarter of the run")
    workers = shoal_json("workers", "--boss", second["url"], cwd=tmp_path, env=env)
    assert {w["boss"] for w in workers} == {rows[0]["id"], rows[1]["id"]}  # both served

    procs.procs[0].send_signal(signal.SIGKILL)  # the first boss, the housekeeper
    procs.procs[0].wait(10)

    # The second boss takes over the housekeeping within seconds...
    wait_for(
        lambda: (
            [
                b["housekeeper"]
                for b in shoal_json("bosses", "--boss", second["url"], cwd=tmp_path, env=env)
                if b["id"] == rows[1]["id"]
            ]
            == [True]
        ),
        timeout=10,
        what="the second boss to take over the housekeeping",
    )
    # ...and the run completes, every task succeeded exactly once.
    wait_for(
        lambda: (
            shoal_json("status", run_id, "--boss", second["url"], cwd=tmp_path, env=env)["state"]
            == "succeeded"
        ),
        timeout=90,
        what="the run to finish on the second boss",
    )
    attempts = _attempts(pg_url)
    succeeded = sorted(name for name, state in attempts if state == "succeeded")
    assert succeeded == sorted(f"t-{i}" for i in range(120))
    results = shoal_json("results", run_id, "--boss", second["url"], cwd=tmp_path, env=env)
    assert sorted(int(r) for r in results.values()) == list(range(120))


def test_shoal_run_on_postgresql_and_reading_it_afterwards(tmp_path: Path, pg_url: str) -> None:
    write(
        tmp_path / "f.yaml",
        "tasks:\n  - {name: a, run: echo 1}\n  - {name: b, run: 'echo $((2 * 21))', after: [a]}\n",
    )
    proc = shoal("run", "f.yaml", "--db", pg_url, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".shoal" / "shoal.db").exists()
    # No boss runs now: the commands read the database `shoal run` used.
    assert shoal_json("results", cwd=tmp_path) == {"a": 1, "b": 42}
    again = shoal("run", "f.yaml", "--db", pg_url, "--json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    view = json.loads(again.stdout)
    assert view["run"] == 2 and all(t["cached"] for t in view["tasks"])  # same database

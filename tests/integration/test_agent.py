"""The real worker agent against a real boss: workspaces, files, results, logs, limits."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoal import protocol as p
from shoal import spec
from shoal.client import BossClient
from shoal.machines import Machines
from tests.conftest import AgentThread, RunningBoss, write


@pytest.fixture
def client(boss: RunningBoss) -> Iterator[BossClient]:
    with BossClient(boss.url, boss.token) as c:
        yield c


@pytest.fixture
def agent(boss: RunningBoss, tmp_path: Path) -> Iterator[AgentThread]:
    a = AgentThread(boss.url, boss.token, tmp_path / "work", slots=2)
    yield a
    a.stop()


def submit(client: BossClient, tmp_path: Path, text: str) -> int:
    return client.submit(spec.load(write(tmp_path / "tasks.yaml", text)))


def wait(client: BossClient, run_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.run(run_id)
        if view["state"] != "running":
            return view
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end: {client.run(run_id)}")


def by_name(client: BossClient, run_id: int) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in client.tasks(run_id)}


def test_outputs_become_inputs_and_results_are_kept(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    rid = submit(
        client,
        tmp_path,
        """
env: {GREETING: hello}
tasks:
  - name: make
    run: [echo "$GREETING from $SHOAL_TASK" > note.txt, mkdir -p deep, echo 1 > deep/one.dat]
    outputs: [note.txt, "deep/*.dat"]
  - name: use
    after: [make]
    run: "cat inputs/make/note.txt; echo '{\\"lines\\": 1}' > $SHOAL_RESULT"
  - name: last-line
    after: [make]
    run: [echo ignored, wc -l < inputs/make/deep/one.dat]
""",
    )
    assert wait(client, rid)["state"] == "succeeded"
    tasks = by_name(client, rid)
    assert tasks["make"]["outputs"] == ["note.txt", "deep/one.dat"]
    assert client.results(rid) == {"use": {"lines": 1}, "last-line": 1}
    assert client.log(rid, "use") == "hello from make\n"
    assert tasks["use"]["worker"] == "w" and tasks["use"]["duration"] >= 0


def test_workspace_is_fresh_and_removed(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    rid = submit(
        client,
        tmp_path,
        """
tasks:
  - name: dirty
    run: [touch leftover, mkdir -p sub/dir, pwd]
  - name: clean
    after: [dirty]
    run: ls -A | wc -l
""",
    )
    assert wait(client, rid)["state"] == "succeeded"
    assert client.results(rid)["clean"] == 0
    dirty_ws = client.results(rid)["dirty"]
    assert not Path(dirty_ws, "leftover").exists()


def test_failure_reports_exit_code_and_log_tail(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    rid = submit(
        client,
        tmp_path,
        "tasks:\n  - name: bad\n    run: [echo about to fail, echo oops >&2, exit 7]\n",
    )
    assert wait(client, rid)["state"] == "failed"
    bad = by_name(client, rid)["bad"]
    assert bad["exit_code"] == 7 and bad["cause"] == "exit code 7"
    assert sorted(client.log(rid, "bad").splitlines()) == ["about to fail", "oops"]


def test_timeout_kills_the_whole_process_group(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    pidfile = tmp_path / "child.pid"
    rid = submit(
        client,
        tmp_path,
        f"tasks:\n  - name: slow\n    timeout: 1s\n    run: sleep 60 & echo $! > {pidfile}; wait\n",
    )
    start = time.monotonic()
    view = wait(client, rid, timeout=30)
    assert view["state"] == "failed"
    assert time.monotonic() - start < 15
    assert by_name(client, rid)["slow"]["cause"] == "timeout after 1s"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert (
        not Path(f"/proc/{child}").exists()
        or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    )


def test_cancel_stops_a_running_attempt(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    rid = submit(
        client,
        tmp_path,
        "tasks:\n  - name: long\n    run: sleep 60\n  - name: next\n    after: [long]\n    run: 'true'\n",
    )
    deadline = time.monotonic() + 10
    while client.run(rid)["counts"].get("running") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client.cancel(rid)
    deadline = time.monotonic() + 10
    while client.task(rid, "long")["attempt_list"][-1]["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.run(rid)["state"] == "cancelled"
    assert by_name(client, rid)["next"]["state"] == "cancelled"


def test_retries_until_success(client: BossClient, agent: AgentThread, tmp_path: Path) -> None:
    marker = tmp_path / "count"
    rid = submit(
        client,
        tmp_path,
        f"tasks:\n  - name: flaky\n    retries: 3\n    run: echo x >> {marker}; test $(wc -l < {marker}) -ge 3\n",
    )
    assert wait(client, rid)["state"] == "succeeded"
    flaky = client.task(rid, "flaky")
    assert flaky["attempts"] == 3
    assert [a["state"] for a in flaky["attempt_list"]] == ["failed", "failed", "succeeded"]


def test_bundle_is_unpacked_once_and_setup_runs_once(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    code = tmp_path / "code"
    write(code / "lib" / "data.txt", "bundled\n")
    write(code / "hello.sh", "cat lib/data.txt\n")
    setup_log = tmp_path / "setups"
    text = f"""
bundle: code
setup: echo setup >> {setup_log}
tasks:
  - name: t-{{i}}
    matrix: {{i: [1, 2, 3, 4]}}
    run: sh hello.sh
"""
    rid = submit(client, tmp_path, text)
    assert wait(client, rid)["state"] == "succeeded"
    assert set(client.results(rid).values()) == {"bundled"}
    rid2 = submit(client, tmp_path, text)
    assert wait(client, rid2)["state"] == "succeeded"
    assert setup_log.read_text() == "setup\n"


def test_failed_setup_stops_the_worker_and_leaves_the_task_to_others(
    client: BossClient, agent: AgentThread, boss: RunningBoss, tmp_path: Path
) -> None:
    # Another host is connected: it may set the bundle up (with none, the run fails).
    boss.scheduler.register(p.Registration(name="other", host="elsewhere", slots=1))
    write(tmp_path / "code" / "x.txt", "x")
    rid = submit(
        client,
        tmp_path,
        "bundle: code\nsetup: echo cannot build >&2; exit 3\ntasks:\n  - {name: t, run: 'true'}\n",
    )
    agent.thread.join(30)
    assert agent.code == 3  # this host takes no more tasks
    task = by_name(client, rid)["t"]
    assert task["state"] == "ready"  # not failed: another host may set it up
    stopped = [e for e in client.events(rid) if e["kind"] == "attempt_interrupted"]
    cause = stopped[0]["detail"]
    assert "setup failed with exit code 3" in cause and "cannot build" in cause
    assert ".shoal-setup.log" in cause and "(on w)" in cause
    why = [e["detail"] for e in client.events(None) if e["kind"] == "worker_stopped"]
    assert why and "cannot build" in why[0]
    assert {w["name"]: w["state"] for w in client.workers()} == {
        "w": "stopped",
        "other": "active",
    }


def test_setup_failing_waits_for_a_machine_still_starting_then_fails_the_run(
    client: BossClient, agent: AgentThread, boss: RunningBoss, tmp_path: Path
) -> None:
    # A host still connecting (its agent not registered yet) may set the bundle up.
    book = Machines(boss.scheduler.store, boss.scheduler.clock)
    book.record(
        "run:1", [{"name": "slow", "pool": "hosts", "provider": "ssh", "state": "starting"}]
    )
    write(tmp_path / "code" / "x.txt", "x")
    rid = submit(
        client,
        tmp_path,
        "bundle: code\nsetup: echo cannot build >&2; exit 3\ntasks:\n  - {name: t, run: 'true'}\n",
    )
    agent.thread.join(30)
    assert agent.code == 3
    assert by_name(client, rid)["t"]["state"] == "ready"
    assert boss.scheduler.fail_setup_stranded() == []  # "slow" may still come
    # It never came: nothing is left that could take the task, so the run fails, saying why.
    book.record("run:1", [{"name": "slow", "pool": "hosts", "provider": "ssh", "state": "failed"}])
    assert boss.scheduler.fail_setup_stranded() == [rid]
    task = by_name(client, rid)["t"]
    assert task["state"] == "failed"
    assert "cannot build" in task["cause"] and "(on every worker: w)" in task["cause"]
    assert client.run(rid)["state"] == "failed"


def test_inputs_come_from_the_datastore(
    client: BossClient, agent: AgentThread, boss: RunningBoss, tmp_path: Path
) -> None:
    write(tmp_path / "local.csv", "a,b\n1,2\n")
    client.http.upload("datasets/table.csv", str(tmp_path / "local.csv"))
    rid = submit(
        client,
        tmp_path,
        "tasks:\n  - name: read\n    inputs: [datasets/table.csv]\n    run: tail -1 datasets/table.csv\n",
    )
    assert wait(client, rid)["state"] == "succeeded"
    assert client.results(rid) == {"read": "1,2"}


def test_missing_output_fails_the_task(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    rid = submit(
        client, tmp_path, "tasks:\n  - name: forgot\n    run: 'true'\n    outputs: [report.pdf]\n"
    )
    assert wait(client, rid)["state"] == "failed"
    assert "report.pdf" in by_name(client, rid)["forgot"]["cause"]


def test_two_runs_at_once_both_finish(
    client: BossClient, boss: RunningBoss, tmp_path: Path
) -> None:
    agents = [AgentThread(boss.url, boss.token, tmp_path / f"w{i}", name=f"w{i}") for i in range(2)]
    try:
        r1 = submit(
            client,
            tmp_path,
            "tasks:\n  - name: a-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8]}\n    run: echo {i}\n",
        )
        r2 = submit(
            client,
            tmp_path,
            "tasks:\n  - name: b-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8]}\n    run: echo {i}0\n",
        )
        assert wait(client, r1)["state"] == "succeeded"
        assert wait(client, r2)["state"] == "succeeded"
        assert sorted(client.results(r1).values()) == list(range(1, 9))
        assert sorted(client.results(r2).values()) == [i * 10 for i in range(1, 9)]
    finally:
        for a in agents:
            a.stop()
    assert {w["state"] for w in client.workers()} == {"stopped"}


def test_environment_variables_are_set(
    client: BossClient, agent: AgentThread, tmp_path: Path
) -> None:
    rid = submit(
        client,
        tmp_path,
        "name: envy\ntasks:\n  - name: e\n    run: echo $SHOAL_RUN/$SHOAL_TASK/$SHOAL_ATTEMPT/$SHOAL_WORKER/$SHOAL_RUN_ID\n",
    )
    assert wait(client, rid)["state"] == "succeeded"
    assert client.results(rid) == {"e": f"envy/e/1/w/{rid}"}
    assert os.environ.get("SHOAL_TASK") is None


def test_an_agent_with_a_limit_gives_up_on_a_boss_out_of_reach(tmp_path: Path) -> None:
    from tests.conftest import RunningBoss, free_port

    # Never reached: it gives up while registering.
    nobody = AgentThread(f"http://127.0.0.1:{free_port()}", "t", tmp_path / "a", give_up_after=1)
    nobody.thread.join(20)
    assert nobody.code == 1

    # Reached, then gone (as behind an ssh tunnel whose connection died).
    boss = RunningBoss(tmp_path / "boss")
    try:
        agent = AgentThread(boss.url, boss.token, tmp_path / "b", give_up_after=1)
        client = BossClient(boss.url, boss.token)
        deadline = time.monotonic() + 20
        while not client.workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        client.close()
    finally:
        boss.stop()
    agent.thread.join(30)
    assert agent.code == 1

"""One attempt on the runner: causes a user reads when a command does not succeed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shoal import protocol as p
from shoal.agent import runner as r


def attempt(cmds: list[str], **kw: object) -> r.Attempt:
    return r.Attempt(
        p.Assignment(attempt_id=1, run_id=1, run="r", task="t", number=1, run_cmds=cmds, **kw)
    )  # type: ignore[arg-type]


def run(tmp_path: Path, a: r.Attempt) -> p.Report:
    runner = r.Runner(None, str(tmp_path), "w")  # type: ignore[arg-type]
    try:
        return runner.run(a)
    finally:
        runner.close()


def test_exit_code_and_signal_causes(tmp_path: Path) -> None:
    assert run(tmp_path, attempt(["exit 4"])).cause == "exit code 4"
    assert run(tmp_path, attempt(["kill -TERM $$"])).cause == "killed by SIGTERM"


def test_sigkill_while_the_oom_count_grows_reads_as_the_oom_killer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counts = iter([5, 6])
    monkeypatch.setattr(r, "_oom_kills", lambda: next(counts))
    report = run(tmp_path, attempt(["kill -KILL $$"]))
    assert report.cause == "killed by SIGKILL (the kernel's out-of-memory killer)"


def test_plain_sigkill_is_not_blamed_on_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(r, "_oom_kills", lambda: 5)
    assert run(tmp_path, attempt(["kill -KILL $$"])).cause == "killed by SIGKILL"


def test_bad_result_file_fails_the_attempt(tmp_path: Path) -> None:
    report = run(tmp_path, attempt(["echo '{not json' > $SHOAL_RESULT"]))
    assert report.outcome == p.FAILED and "does not hold JSON" in (report.cause or "")


def test_cleanup_runs_even_after_a_failure(tmp_path: Path) -> None:
    marker = tmp_path / "cleaned"
    report = run(tmp_path, attempt(["exit 1"], cleanup=[f"touch {marker}"]))
    assert report.outcome == p.FAILED and marker.exists()


def test_download_failure_skips_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    report = run(tmp_path, attempt([f"touch {marker}"], download=["exit 9"]))
    assert report.exit_code == 9 and not marker.exists()


def test_a_new_worker_removes_the_workspaces_of_workers_that_are_gone(tmp_path: Path) -> None:
    import socket
    import subprocess

    parent = tmp_path / "work" / "ws"
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = socket.gethostname()
    for name, owner in (
        ("ws-gone", f"{host} {gone.pid} 1"),
        ("ws-reused-pid", f"{host} {os.getpid()} 1"),  # this PID, not this process's start
        ("ws-alive", r._process_mark(os.getpid())),
        ("ws-making", None),  # no owner yet: being made
        ("ws-other-host", f"{host}-not {gone.pid} 1"),  # a shared folder: not ours to judge
    ):
        (parent / name / "1").mkdir(parents=True)
        (parent / name / "1" / "big.bin").write_bytes(b"x" * 1000)
        if owner is not None:
            (parent / name / r.OWNER_FILE).write_text(owner)
    removed = r.sweep_workspaces(str(parent))
    assert sorted(os.path.basename(f) for f in removed) == ["ws-gone", "ws-reused-pid"]
    assert sorted(os.listdir(parent)) == ["ws-alive", "ws-making", "ws-other-host"]


def test_a_task_sees_the_workers_environment_its_own_variables_and_shoals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's environment is read once; each task's variables are laid over it.
    monkeypatch.setenv("FROM_WORKER", "w-value")
    monkeypatch.setenv("OVERRIDDEN", "the worker's")
    runner = r.Runner(None, str(tmp_path), "w")  # type: ignore[arg-type]
    try:
        first, second = (
            runner.run(
                attempt(
                    ['echo "$FROM_WORKER|$OVERRIDDEN|$SHOAL_TASK|${ONLY_FIRST-unset}"'],
                    env=env,
                )
            )
            for env in ({"OVERRIDDEN": "the task's", "ONLY_FIRST": "é"}, {})
        )
    finally:
        runner.close()
    assert (first.log or "").strip() == "w-value|the task's|t|é"
    assert (second.log or "").strip() == "w-value|the worker's|t|unset"


def test_the_oom_count_is_the_kernels(tmp_path: Path) -> None:
    with open("/proc/vmstat") as f:
        told = {k: v for k, v in (line.split() for line in f)}
    assert r._oom_kills() == int(told.get("oom_kill", 0))

"""`shoal gc`: what it frees, what it keeps because a task still needs it, and --dry-run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from shoal.spec import spec_from_dict
from shoal.spec.bundle import pack_bundle
from tests.conftest import AgentThread, RunningBoss, shoal, shoal_json, wait_for, write


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _state(boss: RunningBoss, run_id: int) -> str:
    return str(boss.scheduler.run_view(run_id)["state"])


def _task_state(boss: RunningBoss, run_id: int, name: str) -> str:
    return str(boss.scheduler.task_view(run_id, name)["state"])


# Each task prints a line, so that each attempt leaves a log.
PREP = {"name": "prep", "run": "echo prep; echo data > data.txt", "outputs": ["data.txt"]}


def test_gc_frees_what_no_run_needs_and_keeps_what_a_waiting_task_reads(
    tmp_path: Path, boss: RunningBoss
) -> None:
    data = boss.root / "data"
    env = {"SHOAL_TOKEN": boss.token}
    at = ["--boss", boss.url]
    worker = AgentThread(boss.url, boss.token, tmp_path / "work", slots=2)
    try:
        # A run with a bundle; a run whose prep a later run reuses.
        write(tmp_path / "code" / "hi.sh", "echo hi\n")
        digest, archive = pack_bundle(tmp_path / "code")
        old = boss.boss.submit(
            spec_from_dict(
                {
                    "name": "old",
                    "tasks": [
                        {"name": "hi", "run": "echo hi; sh hi.sh > hi.txt", "outputs": ["hi.txt"]}
                    ],
                }
            ),
            archive,
            digest,
        )
        use = {
            "name": "use",
            "after": ["prep"],
            "run": "echo use; cat inputs/prep/data.txt > used.txt",
            "outputs": ["used.txt"],
        }
        first = boss.boss.submit(spec_from_dict({"name": "pipe", "tasks": [PREP, use]}))
        for run_id in (old, first):
            wait_for(lambda r=run_id: _state(boss, r) == "succeeded", timeout=90, what="a run")

        # The same pipe again: prep is reused from the first run (its outputs stay in that
        # run's folder); 'use' now waits for a gate the test opens.
        gate = tmp_path / "gate"
        waiting_use = dict(use, after=["prep", "gate"])
        gate_task = {"name": "gate", "run": f"while [ ! -e {gate} ]; do sleep 0.1; done"}
        second = boss.boss.submit(
            spec_from_dict({"name": "pipe", "tasks": [PREP, gate_task, waiting_use]}), reuse=True
        )
        assert boss.scheduler.task_view(second, "prep")["source_run"] == first
        wait_for(lambda: _task_state(boss, second, "gate") == "running", what="the gate to run")
        assert _task_state(boss, second, "use") == "waiting"

        # Leftovers: a run the database no longer has, an attempt's staged output; and an input.
        write(data / "runs" / "777" / "t" / "out.txt", "gone\n")
        write(data / "logs" / "777" / "t" / "5.log", "gone\n")
        write(data / ".staging" / "999999" / "out.txt", "half\n")
        write(tmp_path / "keep.txt", "mine\n")
        assert (
            shoal(
                "data", "add", "keep.txt", "inputs/keep.txt", *at, cwd=tmp_path, env=env
            ).returncode
            == 0
        )
        before = _files(data)

        dry = shoal("gc", "--older-than", "0", "--dry-run", *at, cwd=tmp_path, env=env)
        assert dry.returncode == 0, dry.stderr
        assert "would free" in dry.stdout and f"runs/{first}/use" in dry.stdout
        assert _files(data) == before  # a dry run changes nothing

        plan: dict[str, Any] = shoal_json("gc", "--older-than", "0", *at, cwd=tmp_path, env=env)
        removed = {(r["kind"], r["path"]) for r in plan["removals"]}
        assert {
            ("outputs", f"runs/{old}"),
            ("outputs", f"runs/{first}/use"),
            ("outputs", "runs/777"),
            ("logs", f"logs/{old}"),
            ("logs", f"logs/{first}"),
            ("logs", "logs/777"),
            ("bundles", f"bundles/{digest}.tar.gz"),
            ("staged", ".staging/999999"),
        } == removed
        assert plan["totals"]["outputs"]["files"] == 3
        assert plan["totals"]["staged"] == {"files": 1, "bytes": 5}
        assert plan["totals"]["bundles"]["files"] == 1
        assert plan["kept"] == {"outputs": 1}
        after = _files(data)
        assert f"runs/{first}/prep/data.txt" in after  # a waiting task reads it
        assert "inputs/keep.txt" in after  # added by hand: never gc's
        assert not any(
            f.startswith(
                (f"runs/{old}/", f"runs/{first}/use/", "runs/777/", "bundles/", ".staging/")
            )
            for f in after
        )
        assert not any(f.startswith((f"logs/{old}/", f"logs/{first}/")) for f in after)

        # What was kept is what the waiting task needed: it runs, and reads it.
        gate.touch()
        wait_for(lambda: _state(boss, second) in ("succeeded", "failed"), timeout=90, what="run 2")
        assert _state(boss, second) == "succeeded", boss.scheduler.task_view(second, "use")
        copied = shoal("results", "--outputs", str(second), "out", *at, cwd=tmp_path, env=env)
        assert copied.returncode == 0, copied.stderr
        assert (tmp_path / "out" / "use" / "used.txt").read_text() == "data\n"
        assert (tmp_path / "out" / "prep" / "data.txt").read_text() == "data\n"

        # With the default age, runs that ended a moment ago keep everything.
        again = shoal("gc", *at, cwd=tmp_path, env=env)
        assert again.returncode == 0 and again.stdout.startswith("freed 0 files"), again.stdout
    finally:
        worker.stop()


def test_gc_without_a_boss_works_on_the_state_folder(tmp_path: Path) -> None:
    write(
        tmp_path / "t.yaml",
        "name: t\ntasks:\n"
        "  - {name: a, run: 'echo a > a.txt', outputs: [a.txt]}\n"
        "  - {name: b, after: [a], run: 'cat inputs/a/a.txt > b.txt', outputs: [b.txt]}\n",
    )
    assert shoal("run", "t.yaml", "-j", "1", cwd=tmp_path).returncode == 0
    data = tmp_path / ".shoal" / "data"
    assert "runs/1/a/a.txt" in _files(data)

    bad = shoal("gc", "--older-than", "soon", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--older-than" in bad.stderr

    kept = shoal("gc", cwd=tmp_path)  # ended just now: younger than 30 days
    assert kept.returncode == 0 and "runs/1/a/a.txt" in _files(data)
    time.sleep(1.1)  # so that the run ended more than a second ago
    dry = shoal("gc", "--older-than", "1s", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "would free" in dry.stdout and "runs/1" in dry.stdout
    assert "runs/1/a/a.txt" in _files(data)
    freed = shoal("gc", "--older-than", "1s", cwd=tmp_path)
    assert freed.returncode == 0 and "freed 2 files, 4 B: outputs 2 files" in freed.stdout, (
        freed.stdout
    )
    assert not any(f.startswith(("runs/1/", "logs/1/")) for f in _files(data))
    # The run's record stays.
    assert shoal_json("status", "t", cwd=tmp_path)["state"] == "succeeded"

    # Running the file again reuses nothing whose outputs went: a and b run again.
    again = shoal("run", "t.yaml", "-j", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert shoal_json("status", "t", cwd=tmp_path)["cached"] == 0
    assert shoal("results", "--outputs", "t", "out", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out" / "b" / "b.txt").read_text() == "a\n"


def test_gc_refuses_a_bad_age_with_one_line(tmp_path: Path) -> None:
    proc = shoal("gc", "--older-than=-3d", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr

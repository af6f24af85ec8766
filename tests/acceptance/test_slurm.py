"""Workers as Slurm batch jobs, on a real one-node cluster the test starts (tests/slurmlab.py).

munged, slurmctld and slurmd run on loopback with a configuration of the
test's own; shoal submits, watches and cancels jobs with the real sbatch,
squeue and scancel, and each job runs the agent zipapp from the state folder.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Procs, alive, shoal, shoal_json, start_boss, wait_for, write
from tests.slurmlab import SlurmLab, needs_slurm, slurm_lab

pytestmark = needs_slurm


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[SlurmLab]:
    with slurm_lab(tmp_path) as made:
        yield made


def pool_file(path: Path, **fields: Any) -> Path:
    """A slurm pool ``hpc`` of one-CPU jobs (the lab's node has two CPUs)."""
    lines = ["pools:", "  - name: hpc", "    provider: slurm", "    cpus: 1"]
    lines += [f"    {k}: {v}" for k, v in fields.items()]
    return write(path, "\n".join(lines) + "\n")


def machines(cwd: Path) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in shoal_json("machines", cwd=cwd)}


def keeper_of(cwd: Path, procs: Procs) -> int:
    """The PID of the keeper `shoal up` left, stopped by the test if it is left over
    (0 if none was left); asked for before anything is asserted of `shoal up`."""
    up_json = cwd / ".shoal" / "up.json"
    if not up_json.exists():
        return 0
    pid = int(json.loads(up_json.read_text())["pid"])
    procs.extra.append(pid)
    return pid


def keeper_log(cwd: Path) -> str:
    path = cwd / ".shoal" / "logs" / "keeper.log"
    return path.read_text() if path.exists() else ""


def test_a_run_on_two_slurm_jobs_leaves_no_job_behind(tmp_path: Path, lab: SlurmLab) -> None:
    pool_file(tmp_path / "pools.yaml", count=2, walltime="10m")
    write(
        tmp_path / "t.yaml",
        "tasks:\n"
        "  - name: sim-{i}\n"
        "    matrix: {i: [1, 2, 3, 4, 5, 6]}\n"
        "    run: echo $SLURM_JOB_ID {i} > out.txt; sleep 1\n"
        "    outputs: [out.txt]\n"
        "    timeout: 1m\n"
        "  - name: sum\n"
        "    after: [sim-*]\n"
        "    run: cat inputs/*/out.txt | wc -l\n",
    )
    done = shoal("run", "t.yaml", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr + lab.log()
    assert "on 2 Slurm jobs" in done.stderr
    tasks = shoal_json("tasks", cwd=tmp_path)
    assert {t["state"] for t in tasks} == {"succeeded"}
    workers = {t["worker"] for t in tasks if t["name"].startswith("sim-")}
    assert workers == {"hpc-1", "hpc-2"}, (tasks, done.stderr)
    found = machines(tmp_path)
    assert sorted(found) == ["hpc-1", "hpc-2"]
    assert all(m["provider"] == "slurm" and m["provider_id"].isdigit() for m in found.values())
    assert {m["state"] for m in found.values()} == {"stopped"}, found
    # Its jobs ran the tasks (the task saw its job's id), and are gone from the queue.
    ids = {m["provider_id"] for m in found.values()}
    outs = (tmp_path / ".shoal" / "data" / "runs").rglob("out.txt")
    assert {p.read_text().split()[0] for p in outs} == ids
    assert lab.wait_no_jobs() == []
    assert not list((tmp_path / ".shoal" / "slurm").glob("*.token"))


def test_the_token_is_in_no_command_line_script_record_environment_or_log(
    tmp_path: Path, lab: SlurmLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    token = (tmp_path / ".shoal" / "token").read_text().strip()
    pool_file(tmp_path / "pools.yaml", count=1)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    keeper_of(tmp_path, procs)
    assert up.returncode == 0, up.stdout + up.stderr + lab.log()
    (job,) = lab.jobs()
    assert job.state == "RUNNING"
    seen = {
        "ps": subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout,
        "scontrol": lab.run("scontrol", "-dd", "show", "job", job.id).stdout,
        "squeue": lab.run("squeue", "-h", "-o", "%all").stdout,
    }
    for path in (tmp_path / ".shoal" / "slurm").glob("*.sh"):
        seen[str(path)] = path.read_text()
    for path in (tmp_path / ".shoal" / "logs").glob("*.log"):
        seen[str(path)] = path.read_text()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                seen[f"environ of {pid}"] = (
                    Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                )
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"shoal-agent" in argv:
                seen["agent"] = argv.decode()
    assert "agent" in seen, "no agent process found"
    assert "--token-file=/dev/stdin" in seen["agent"]
    leaks = [where for where, text in seen.items() if token in text]
    # The boss and the keeper were given it by their parent, in their environment
    # or stdin (not by Slurm): no process started by the job has it in its environment.
    assert leaks == [], leaks
    # The file it waited in was removed once the job had it.
    assert not list((tmp_path / ".shoal" / "slurm").glob("*.token"))
    assert shoal("down", cwd=tmp_path, env=lab.env()).returncode == 0
    assert lab.wait_no_jobs() == []


def test_a_job_cancelled_mid_task_has_its_task_run_again_and_is_replaced(
    tmp_path: Path, lab: SlurmLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    pool_file(tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    keeper_of(tmp_path, procs)
    assert up.returncode == 0, up.stdout + up.stderr + lab.log()
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: long-{i}\n    matrix: {i: [1, 2, 3]}\n    run: sleep 6\n"
        "    timeout: 2m\n",
    )
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    # One task on each job; the third waits.
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["counts"].get("running") == 2,
        timeout=60,
        what="a task on each job",
    )
    victim = machines(tmp_path)["hpc-1"]["provider_id"]
    lab.run("scancel", victim)
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=180,
        what="the run to succeed anyway",
    )
    found = machines(tmp_path)
    log = keeper_log(tmp_path)
    assert found["hpc-1"]["state"] == "preempted", (found, log)
    assert f"Slurm ended job {victim}: CANCELLED" in found["hpc-1"]["detail"]
    tasks = shoal_json("tasks", cwd=tmp_path)
    assert {t["state"] for t in tasks} == {"succeeded"}
    rerun = [t for t in tasks if t["attempts"] >= 2]
    assert len(rerun) == 1, (tasks, found, log)  # the one hpc-1 held ran again
    assert rerun[0]["worker"] != "hpc-1"

    # A new job takes its place (a new name: hpc-1 keeps its record); on a loaded
    # machine the run may end before the keeper's next look, so wait for it.
    def replaced() -> dict[str, Any] | None:
        now = machines(tmp_path)
        return now if "hpc-3" in now else None

    found = wait_for(replaced, timeout=120, what="a job in hpc-1's place")
    assert found["hpc-3"]["provider_id"] != victim, keeper_log(tmp_path)
    assert shoal("down", cwd=tmp_path, env=lab.env()).returncode == 0
    assert lab.wait_no_jobs() == []


def test_a_job_whose_walltime_is_shorter_than_the_work_drains_and_a_new_job_takes_over(
    tmp_path: Path, lab: SlurmLab
) -> None:
    # 30 s of walltime: the worker drains 3 s before its end, and takes a
    # 10 s task only while 10 s remain before that; the rest is a new job's.
    pool_file(tmp_path / "pools.yaml", count=1, walltime="30s")
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: step-{i}\n    matrix: {i: [1, 2, 3, 4, 5, 6, 7]}\n"
        "    run: sleep 4\n    timeout: 10s\n",
    )
    done = shoal("run", "t.yaml", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr + lab.log()
    tasks = shoal_json("tasks", cwd=tmp_path)
    # No attempt was cut short: each task ran once, to the end.
    assert all(t["state"] == "succeeded" and t["attempts"] == 1 for t in tasks), tasks
    by_worker: dict[str, int] = {}
    for t in tasks:
        by_worker[t["worker"]] = by_worker.get(t["worker"], 0) + 1
    assert set(by_worker) >= {"hpc-1", "hpc-2"}, (by_worker, done.stderr)
    found = machines(tmp_path)
    # The first job's worker ended by itself before its end: Slurm killed nothing.
    assert found["hpc-1"]["state"] == "stopped", found
    assert "its time ran out" in found["hpc-1"]["detail"], found
    assert not any(m["state"] == "preempted" for m in found.values()), found
    assert lab.wait_no_jobs() == []


def test_a_pool_of_jobs_grows_under_load_and_shrinks_to_none_when_idle(
    tmp_path: Path, lab: SlurmLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    pool_file(tmp_path / "pools.yaml", min=0, max=2, idle_stop="4s")
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=120)
    keeper_of(tmp_path, procs)
    assert up.returncode == 0, up.stdout + up.stderr
    assert lab.jobs() == []
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: t-{i}\n    matrix: {i: [" + ", ".join(map(str, range(16))) + "]}\n"
        "    run: sleep 2\n    timeout: 1m\n",
    )
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    most = 0

    def succeeded() -> bool:
        nonlocal most
        most = max(most, len(lab.jobs()))
        return bool(shoal_json("status", cwd=tmp_path)["state"] == "succeeded")

    wait_for(succeeded, timeout=180, what="the run to succeed")
    assert most == 2, keeper_log(tmp_path)  # grown to its max, never above
    # Idle: every job cancelled, each machine stopped for it; nothing was lost.
    assert lab.wait_no_jobs(60) == [], keeper_log(tmp_path)
    wait_for(
        lambda: all(m["state"] == "stopped" for m in machines(tmp_path).values()),
        timeout=30,
        what="the machines to be recorded stopped",
    )
    found = machines(tmp_path)
    assert all("idle" in m["detail"] for m in found.values()), found
    tasks = shoal_json("tasks", cwd=tmp_path)
    assert all(t["state"] == "succeeded" and t["attempts"] == 1 for t in tasks), tasks
    assert shoal("down", cwd=tmp_path, env=lab.env()).returncode == 0


def test_down_cancels_every_job_after_the_keeper_and_the_boss_are_killed(
    tmp_path: Path, lab: SlurmLab, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path)
    pool_file(tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    keeper = keeper_of(tmp_path, procs)
    assert up.returncode == 0, up.stdout + up.stderr + lab.log()
    assert sorted(j.state for j in lab.jobs()) == ["RUNNING", "RUNNING"]
    tag = (tmp_path / ".shoal" / "boss-tag").read_text().strip()
    os.kill(keeper, signal.SIGKILL)
    os.kill(int(info["pid"]), signal.SIGKILL)
    wait_for(lambda: not alive(keeper) and not alive(int(info["pid"])), what="both to die")
    # One more, never recorded (its launcher died before sbatch answered), and
    # one of someone else's: found by this boss's tag, the other left alone.
    lab.run(
        "sbatch",
        f"--comment=shoal-boss={tag},shoal-pool=hpc,shoal-machine=hpc-9,shoal-owner=up",
        "--wrap=sleep 300",
    )
    other = lab.run("sbatch", "--parsable", "--wrap=sleep 300").stdout.strip()
    down = shoal("down", cwd=tmp_path, env=lab.env())
    assert down.returncode == 0, down.stdout + down.stderr
    left = lab.wait_no_jobs(timeout=15)
    assert [j.id for j in left] == [other], left
    lab.run("scancel", other)
    assert lab.wait_no_jobs() == []


def test_up_says_a_job_still_in_the_queue_is_not_running_yet_and_keeps_it(
    tmp_path: Path, lab: SlurmLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    # Someone else's job holds both CPUs of the cluster's one node.
    blocker = lab.run("sbatch", "--parsable", "--cpus-per-task=2", "--wrap=sleep 300").stdout
    wait_for(lambda: [j.state for j in lab.jobs()] == ["RUNNING"], what="the other job to run")
    pool_file(tmp_path / "pools.yaml", count=1)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=300)
    keeper_of(tmp_path, procs)
    # Not a failure: the job waits its turn (shoal up waited a minute for it).
    assert up.returncode == 0, up.stdout + up.stderr + lab.log()
    said = " ".join(up.stdout.split())  # as one line, however the terminal wrapped it
    assert re.search(
        r"hpc-1: not running yet \(job \d+ waits in Slurm's queue \(\w+\)\); "
        r"its worker starts when it runs",
        said,
    ), said
    assert "workers up on 0 of 1 machines (1 more starting)" in said, said
    assert machines(tmp_path)["hpc-1"]["state"] == "starting"
    lab.run("scancel", blocker.strip())
    wait_for(
        lambda: machines(tmp_path)["hpc-1"]["state"] == "running",
        timeout=60,
        what="its worker to start once the job ran",
    )
    wait_for(
        lambda: machines(tmp_path)["hpc-1"]["address"] == "localhost",
        timeout=30,
        what="the node its job runs on to be recorded",
    )
    assert shoal("down", cwd=tmp_path, env=lab.env()).returncode == 0
    assert lab.wait_no_jobs() == []


def test_down_drain_lets_the_running_task_finish_before_the_job_ends(
    tmp_path: Path, lab: SlurmLab, procs: Procs
) -> None:
    start_boss(procs, tmp_path)
    pool_file(tmp_path / "pools.yaml", count=1)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    keeper_of(tmp_path, procs)
    assert up.returncode == 0, up.stdout + up.stderr + lab.log()
    write(tmp_path / "t.yaml", "tasks:\n  - {name: slow, run: sleep 5, timeout: 1m}\n")
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["counts"].get("running") == 1,
        timeout=60,
        what="the task to run",
    )
    down = shoal("down", "--drain", cwd=tmp_path, env=lab.env(), timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    (task,) = shoal_json("tasks", cwd=tmp_path)
    assert (task["state"], task["attempts"]) == ("succeeded", 1), task
    assert lab.wait_no_jobs() == []


def test_jobs_reach_a_boss_under_mtls_each_with_a_certificate_of_its_own_revoked_at_down(
    tmp_path: Path, lab: SlurmLab, procs: Procs
) -> None:
    info = start_boss(procs, tmp_path, "--mtls")
    assert info["url"].startswith("https://127.0.0.1:")
    certs = tmp_path / ".shoal" / "certs"
    pool_file(tmp_path / "pools.yaml", count=2)
    up = shoal("up", "--pool", "pools.yaml", cwd=tmp_path, env=lab.env(), timeout=180)
    keeper_of(tmp_path, procs)
    assert up.returncode == 0, up.stdout + up.stderr + lab.log()
    write(
        tmp_path / "t.yaml",
        "tasks:\n  - name: t-{i}\n    matrix: {i: [1, 2, 3, 4]}\n"
        "    run: echo $SLURM_JOB_ID > out.txt; sleep 1\n    outputs: [out.txt]\n"
        "    timeout: 1m\n",
    )
    assert shoal("submit", "t.yaml", cwd=tmp_path).returncode == 0
    wait_for(
        lambda: shoal_json("status", cwd=tmp_path)["state"] == "succeeded",
        timeout=180,
        what="the run to succeed on the jobs, over mTLS",
    )
    tasks = shoal_json("tasks", cwd=tmp_path)
    assert {t["state"] for t in tasks} == {"succeeded"}
    assert {t["worker"] for t in tasks} <= {"hpc-1", "hpc-2"}, tasks
    # The job names its files; the CA's key stays with shoal.
    script = (tmp_path / ".shoal" / "slurm" / "hpc-1.sh").read_text()
    assert f"--ca={certs}/ca.crt" in script and f"--cert={certs}/hpc-1.crt" in script, script
    assert "ca.key" not in script and (certs / "hpc-1.key").read_text() not in script
    issued = {(c["name"], c["kind"], c["revoked"]) for c in shoal_json("certs", "ls", cwd=tmp_path)}
    assert {("hpc-1", "client", None), ("hpc-2", "client", None)} <= issued, issued
    # hpc-1's certificate, as one who copied it off the shared filesystem would hold it.
    kept = tmp_path / "kept"
    kept.mkdir(mode=0o700)
    for suffix in ("crt", "key"):
        (kept / f"hpc-1.{suffix}").write_bytes((certs / f"hpc-1.{suffix}").read_bytes())
    (kept / "hpc-1.key").chmod(0o600)
    as_job = {
        "SHOAL_CA": str(certs / "ca.crt"),
        "SHOAL_CERT": str(kept / "hpc-1.crt"),
        "SHOAL_KEY": str(kept / "hpc-1.key"),
    }
    taken = shoal("status", cwd=tmp_path, env=as_job)
    assert taken.returncode == 0, taken.stderr  # while its job runs, the boss takes it
    down = shoal("down", cwd=tmp_path, env=lab.env())
    assert down.returncode == 0, down.stdout + down.stderr
    assert lab.wait_no_jobs() == []
    # Its job ended: its certificate is refused, while the boss still serves the others.
    refused = shoal("status", cwd=tmp_path, env=as_job)
    assert refused.returncode != 0
    assert re.search(r"refuse[sd] this client's certificate", refused.stderr), refused.stderr
    assert shoal("status", cwd=tmp_path).returncode == 0
    issued = {(c["name"], c["revoked"] is None) for c in shoal_json("certs", "ls", cwd=tmp_path)}
    assert ("hpc-1", True) not in issued and ("hpc-2", True) not in issued, issued

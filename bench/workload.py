#!/usr/bin/env python3
"""A real workload over ssh hosts: shoal's own unit tests in shards, then a total.

The project is shoal itself: ``git archive HEAD`` of its ``src``, ``tests``
and ``pyproject.toml`` (nothing from the network). Its ``tests/unit`` are
collected once (``pytest --collect-only``) and dealt round-robin into
``--shards`` shards. Each shard is one task: pytest on its tests, writing a
JUnit XML file (a failing test is data, not a failed task); a ``total`` task
after all of them reads every shard's file and sums tests and failures.

* shoal: ``shoal run --hosts`` over 3 ssh hosts with 2 slots each (network
  namespaces with an sshd each, made by this script: ``bench/sshlab.py``),
  the project shipped as the run's bundle, each shard's XML an output handed
  to the total as its input; bring-up and teardown included;
* GNU parallel: ``parallel -j 6`` of the same shard commands in a copy of
  the project on this machine, then the same total.

The hosts share this machine's cores (2 here) and filesystem, so both run 6
shards at once on the same cores: the difference is each one's overhead.
For shoal it prints where a task's time goes besides its command, from the
boss's database and the times each shard's shell took around its command.

    sudo python bench/workload.py [--shards 25] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.sshlab import bench_lab  # noqa: E402

HOSTS = 3
SLOTS = 2


def environment(**more: str) -> dict[str, str]:
    """This process's environment for a command, as a user's shell would have it.

    Without PYTHONDONTWRITEBYTECODE (a setting of some sandboxes): the
    hosts' sshd does not pass it on, and without the bytecode cache every
    shard here would compile the whole project again, a third of its time.
    """
    env = dict(os.environ, **more)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# A shard's shell: the times around its command go to the task's result.
SHARD = (
    "t0=$(date +%s.%N); {python} -m pytest -q -p no:cacheprovider -o addopts= "
    "--junitxml={xml} {tests} || true; t1=$(date +%s.%N); test -s {xml}; "
    'printf \'{{"t0": %s, "t1": %s}}\\n\' "$t0" "$t1" > "${{SHOAL_RESULT:-{times}}}"'
)
# The total: tests and failures over every shard's JUnit file.
TOTAL_PY = r"""
import glob, json, os, sys, time
import xml.etree.ElementTree as ET
sums = dict(files=0, tests=0, failures=0, errors=0, skipped=0)
for path in sorted(glob.glob(sys.argv[1])):
    sums["files"] += 1
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in ("tests", "failures", "errors", "skipped"):
            sums[key] += int(suite.get(key, 0))
sums.update(t0=float(os.environ["t0"]), t1=time.time())
out = os.environ.get("SHOAL_RESULT") or "total.json"
with open(out, "w") as f:
    json.dump(sums, f)
"""


def say(text: str) -> None:
    sys.stderr.write(f"… {text}\n")
    sys.stderr.flush()


def project_copy(dest: Path) -> Path:
    """The project's committed source, tests and pyproject (git archive HEAD)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "src", "tests", "pyproject.toml"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def collect(project: Path) -> list[str]:
    """The project's unit tests: the node id of each test function (all its parameters)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/unit",
        ],
        cwd=project,
        env=environment(PYTHONPATH="src"),
        capture_output=True,
        text=True,
    )
    # A parametrized test's ids can be long: one per function keeps the command lines short.
    ids = list(
        dict.fromkeys(
            line.strip().split("[")[0] for line in proc.stdout.splitlines() if "::" in line
        )
    )
    if not ids:
        sys.exit(f"no tests collected in {project}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return ids


def shard_commands(ids: list[str], shards: int) -> list[str]:
    dealt = [ids[i::shards] for i in range(shards)]
    return [
        SHARD.format(
            python=shlex.quote(sys.executable),
            xml=f"shard-{i}.xml",
            times=f"times-{i}.json",
            tests=" ".join(shlex.quote(t) for t in tests),
        )
        for i, tests in enumerate(dealt)
    ]


def total_command(pattern: str) -> str:
    return f"t0=$(date +%s.%N) {shlex.quote(sys.executable)} -c {shlex.quote(TOTAL_PY)} '{pattern}'"


def task_file(work: Path, commands: list[str]) -> Path:
    tasks: list[dict[str, Any]] = [
        {"name": f"shard-{i}", "run": cmd, "outputs": [f"shard-{i}.xml"]}
        for i, cmd in enumerate(commands)
    ]
    tasks.append(
        {"name": "total", "after": ["shard-*"], "run": total_command("inputs/*/shard-*.xml")}
    )
    spec = {"name": "workload", "bundle": "./project", "env": {"PYTHONPATH": "src"}}
    path = work / "workload.json"
    path.write_text(json.dumps({**spec, "tasks": tasks}, indent=1))
    return path


def shoal_run(work: Path, spec: Path) -> dict[str, Any]:
    """One `shoal run --hosts`: its wall time, the total's sums, and where the time went."""
    state = work / f"state-{time.monotonic_ns()}"
    env = environment(PYTHONPATH=str(ROOT / "src"))
    start = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal",
            "run",
            str(spec),
            "--hosts",
            "hosts.yaml",
            "--state",
            str(state),
            "-q",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    end = time.time()
    if proc.returncode != 0:
        sys.exit(f"shoal run failed ({proc.returncode}): {proc.stderr[-3000:]}")
    with sqlite3.connect(state / "shoal.db") as db:
        rows = db.execute(
            "SELECT t.name, a.assigned, a.started, a.ended, t.result, w.name "
            "FROM attempts a JOIN tasks t ON t.id = a.task_id "
            "JOIN workers w ON w.id = a.worker_id "
            "WHERE a.state = 'succeeded' ORDER BY a.assigned"
        ).fetchall()
    shutil.rmtree(state, ignore_errors=True)
    return {"wall": end - start, "start": start, "end": end, "attempts": rows}


def parallel_run(project: Path, commands: list[str]) -> tuple[float, dict[str, Any], float]:
    """GNU parallel -j 6 of the shards in the project's folder, then the total.

    Its time, the total's sums, and the shards' mean command time. Each job
    runs in a session of its own (``setsid``), as shoal's agent runs each
    attempt: with the kernel's autogroup scheduling on (Linux's default), a
    session is what gets a share of the cores, and on a machine shared with
    other work six jobs in one session would get a sixth of what six
    sessions get.
    """
    for old in [*project.glob("shard-*.xml"), *project.glob("times-*.json")]:
        old.unlink()
    jobs = project / "jobs.txt"
    jobs.write_text("".join(f"setsid -w bash -c {shlex.quote(c)}\n" for c in commands))
    env = environment(PYTHONPATH="src")
    with (project / "parallel.log").open("w") as log:
        start = time.perf_counter()
        done = subprocess.run(
            ["parallel", "--will-cite", "-j", str(HOSTS * SLOTS), "--arg-file", str(jobs)],
            cwd=project,
            env=env,
            stdout=log,
            stderr=log,
        )
        if done.returncode != 0:
            sys.exit(f"GNU parallel failed ({done.returncode}): see {log.name}")
        subprocess.run(
            ["setsid", "-w", "bash", "-c", total_command("shard-*.xml")],
            cwd=project,
            env=env,
            check=True,
        )
        took = time.perf_counter() - start
    times = [json.loads(f.read_text()) for f in project.glob("times-*.json")]
    mean = sum(t["t1"] - t["t0"] for t in times) / len(times)
    return took, json.loads((project / "total.json").read_text()), mean


def breakdown(run: dict[str, Any]) -> list[tuple[str, float]]:
    """Where the run's time went, in seconds: (what, how long)."""
    rows = run["attempts"]
    shards = [r for r in rows if r[0] != "total"]
    total = next(r for r in rows if r[0] == "total")
    pick, stage, command, out = [], [], [], []
    for _name, assigned, started, ended, result, _worker in shards:
        times = json.loads(result)
        pick.append(started - assigned)
        stage.append(times["t0"] - started)
        command.append(times["t1"] - times["t0"])
        out.append(ended - times["t1"])
    first = {}
    for r in shards:  # each host's first shard unpacks the bundle there
        first.setdefault(r[5], r)
    first_stage = [json.loads(r[4])["t0"] - r[2] for r in first.values()]
    t = json.loads(total[4])
    n = len(shards)
    return [
        ("command start -> first shard assigned", shards[0][1] - run["start"]),
        ("shard: assigned -> its attempt starts (mean)", sum(pick) / n),
        ("shard: workspace, bundle, inputs, shell (mean)", sum(stage) / n),
        ("  of which each host's first shard (mean)", sum(first_stage) / len(first_stage)),
        ("shard: command (mean)", sum(command) / n),
        ("shard: outputs, log, result (mean)", sum(out) / n),
        ("last shard ended -> total assigned", total[1] - max(r[3] for r in shards)),
        ("total: assigned -> its command starts", t["t0"] - total[1]),
        ("total: command", t["t1"] - t["t0"]),
        ("total: command ended -> reported", total[3] - t["t1"]),
        ("total reported -> shoal run exits", run["end"] - total[3]),
        ("slots idle: 6 x wall - sum of commands", HOSTS * SLOTS * run["wall"] - sum(command)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=25, help="shards (default 25)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (default 3)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/workload.py makes network namespaces: run it as root")
    if shutil.which("parallel") is None:
        sys.exit("GNU parallel is not installed (apt-get install parallel)")

    work = Path(tempfile.mkdtemp(prefix="shoal-bench-workload-"))
    try:
        project_copy(work / "project")  # the bundle
        local = project_copy(work / "local")
        say("collecting tests/unit")
        ids = collect(local)
        commands = shard_commands(ids, args.shards)
        spec = task_file(work, commands)
        shoal_runs: list[dict[str, Any]] = []
        parallel_walls: list[float] = []
        parallel_commands: list[float] = []
        sums: dict[str, Any] = {}
        with bench_lab(work / "lab", HOSTS) as lab:
            (work / "hosts.yaml").write_text(
                lab.inventory(**{h.name: {"slots": SLOTS} for h in lab.hosts})
            )
            for i in range(args.repeat):
                say(f"round {i + 1} of {args.repeat}: shoal run --hosts")
                shoal_runs.append(shoal_run(work, spec))
                say(f"round {i + 1} of {args.repeat}: parallel -j {HOSTS * SLOTS}")
                took, sums, mean = parallel_run(local, commands)
                parallel_walls.append(took)
                parallel_commands.append(mean)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    walls = [r["wall"] for r in shoal_runs]
    print(
        f"{len(ids)} test functions of tests/unit in {args.shards} shards + a total "
        f"({os.cpu_count()} cores; last parallel total: {sums.get('tests')} tests, "
        f"{sums.get('failures')} failures, {sums.get('errors')} errors)"
    )
    print(
        f"  shoal run, {HOSTS} ssh hosts x {SLOTS} slots: " + ", ".join(f"{w:.1f}" for w in walls)
    )
    print(
        f"  GNU parallel -j {HOSTS * SLOTS}, this machine: "
        + ", ".join(f"{w:.1f}" for w in parallel_walls)
    )
    ratio = statistics.median(parallel_walls) / statistics.median(walls)
    print(f"  shoal / GNU parallel (median times, higher is faster): {ratio:.2f}x")
    parts = [breakdown(r) for r in shoal_runs]
    mean_shoal = [p[4][1] for p in parts]
    print(
        "  a shard's command, mean (the machine's load in each): shoal "
        + ", ".join(f"{m:.1f}" for m in mean_shoal)
        + "; GNU parallel "
        + ", ".join(f"{m:.1f}" for m in parallel_commands)
    )
    print("where shoal's time went (median of the rounds):")
    for j, (what, _) in enumerate(parts[0]):
        values = [p[j][1] for p in parts]
        print(
            f"  {what:48s} {statistics.median(values):7.3f} s  ({min(values):.3f}-{max(values):.3f})"
        )


if __name__ == "__main__":
    main()

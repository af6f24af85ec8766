"""`shoal data add|ls|get|rm` and `shoal results --outputs`, as a user runs them.

Through a running boss (whose datastore is a folder of its own, so a file
that lands there went through the boss), and straight on a folder with no
boss; in both, a run reads as its inputs what `shoal data add` put there.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import Procs, shoal, shoal_json, start_boss, start_worker, wait_for, write

PIPE = """name: pipe
tasks:
  - name: join
    inputs: [in/samples/a.txt, numbers.txt]
    run: cat in/samples/a.txt numbers.txt > both.txt
    outputs: [both.txt]
  - name: count
    after: [join]
    run: wc -l < inputs/join/both.txt | tr -d ' ' > count.txt
    outputs: [count.txt]
"""


def _files(root: Path) -> dict[str, str]:
    """The files a datastore folder holds (not the sha256 records kept beside them)."""
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".integrity/")
    }


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, proc
    err = proc.stderr
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def _local_inputs(tmp_path: Path) -> None:
    write(tmp_path / "samples" / "a.txt", "alpha\n")
    write(tmp_path / "samples" / "deep" / "b.txt", "beta\n")
    write(tmp_path / "numbers.txt", "1\n2\n3\n")


def test_data_through_a_boss_feeds_a_run_and_results_outputs_copies_it_out(
    tmp_path: Path, procs: Procs
) -> None:
    store = tmp_path / "bossdata"
    info = start_boss(procs, tmp_path, "--data", str(store))
    start_worker(procs, tmp_path, info, "w1")
    _local_inputs(tmp_path)

    added = shoal("data", "add", "samples", "in/samples", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    assert "added 2 files" in added.stdout
    assert shoal("data", "add", "numbers.txt", cwd=tmp_path).returncode == 0
    # Through the boss: into its datastore, nowhere else.
    assert _files(store) == {
        "in/samples/a.txt": "alpha\n",
        "in/samples/deep/b.txt": "beta\n",
        "numbers.txt": "1\n2\n3\n",
    }
    assert not (tmp_path / ".shoal" / "data" / "numbers.txt").exists()

    listed = shoal_json("data", "ls", "in", cwd=tmp_path)
    assert [(e["path"], e["size"]) for e in listed] == [
        ("in/samples/a.txt", 6),
        ("in/samples/deep/b.txt", 5),
    ]
    table = shoal("data", "ls", cwd=tmp_path).stdout.splitlines()
    assert [line.split()[-1] for line in table] == [
        "in/samples/a.txt",
        "in/samples/deep/b.txt",
        "numbers.txt",
    ]
    assert len({line.index(line.split()[-1]) for line in table}) == 1  # paths aligned

    write(tmp_path / "pipe.yaml", PIPE)
    submitted = shoal("submit", "-q", "pipe.yaml", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    wait_for(
        lambda: shoal_json("status", run_id, cwd=tmp_path)["state"] in ("succeeded", "failed"),
        timeout=90,
        what="the run",
    )
    assert shoal_json("status", run_id, cwd=tmp_path)["state"] == "succeeded"

    copied = shoal("results", "--outputs", run_id, "out", cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert _files(tmp_path / "out") == {
        "join/both.txt": "alpha\n1\n2\n3\n",
        "count/count.txt": "4\n",
    }

    got = shoal("data", "get", "in/samples", "back", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert _files(tmp_path / "back") == {"a.txt": "alpha\n", "deep/b.txt": "beta\n"}
    (tmp_path / "one").mkdir()
    assert shoal("data", "get", "numbers.txt", "one", cwd=tmp_path).returncode == 0
    assert (tmp_path / "one" / "numbers.txt").read_text() == "1\n2\n3\n"
    # A run's outputs are data too.
    assert shoal("data", "get", f"runs/{run_id}/count/count.txt", cwd=tmp_path).returncode == 0
    assert (tmp_path / "count.txt").read_text() == "4\n"

    # A folder is removed only when asked for with --yes (no terminal to ask on here).
    asked = shoal("data", "rm", "in", cwd=tmp_path)
    _one_line_error(asked, "--yes")
    assert (store / "in" / "samples" / "a.txt").exists()
    removed = shoal("data", "rm", "in", "--yes", cwd=tmp_path)
    assert removed.returncode == 0 and "2 files" in removed.stdout, removed.stderr
    assert shoal("data", "rm", "numbers.txt", cwd=tmp_path).returncode == 0
    assert not (store / "in").exists() and not (store / "numbers.txt").exists()

    # Outputs are the runs': gc's to remove, not rm's; and the boss says so too.
    _one_line_error(shoal("data", "rm", f"runs/{run_id}", "--yes", cwd=tmp_path), "shoal gc")
    token = {"SHOAL_TOKEN": info["token"]}
    request = urllib.request.Request(
        f"{info['url']}/v1/data/runs/{run_id}/join/both.txt",
        method="DELETE",
        headers={"Authorization": f"Bearer {token['SHOAL_TOKEN']}"},
    )
    try:
        urllib.request.urlopen(request, timeout=30)
        raise AssertionError("the boss removed a task's output")
    except urllib.error.HTTPError as e:
        assert e.code == 403 and "shoal gc" in json.load(e)["error"]
    assert (store / "runs" / run_id / "join" / "both.txt").exists()


def test_data_straight_on_a_folder_with_no_boss(tmp_path: Path) -> None:
    _local_inputs(tmp_path)
    store = tmp_path / ".shoal" / "data"
    assert (
        shoal("data", "add", "samples", "in/samples", "--data", str(store), cwd=tmp_path).returncode
        == 0
    )
    assert shoal("data", "add", "numbers.txt", "--data", str(store), cwd=tmp_path).returncode == 0

    # The run's own boss reads the same folder: its inputs come from 'shoal data add'.
    write(tmp_path / "pipe.yaml", PIPE)
    ran = shoal("run", "pipe.yaml", "-j", "1", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr

    # No boss runs now: the commands work on the state folder's datastore.
    assert shoal("results", "--outputs", "pipe", "out", cwd=tmp_path).returncode == 0
    assert _files(tmp_path / "out") == {
        "join/both.txt": "alpha\n1\n2\n3\n",
        "count/count.txt": "4\n",
    }
    listed = {e["path"] for e in shoal_json("data", "ls", cwd=tmp_path)}
    assert {"in/samples/a.txt", "numbers.txt", "runs/1/join/both.txt"} <= listed

    assert shoal("data", "get", "in", "back", "--data", str(store), cwd=tmp_path).returncode == 0
    assert _files(tmp_path / "back") == {"samples/a.txt": "alpha\n", "samples/deep/b.txt": "beta\n"}
    rm = shoal("data", "rm", "in/samples/deep", "--yes", "--data", str(store), cwd=tmp_path)
    assert rm.returncode == 0, rm.stderr
    listed_in = shoal_json("data", "ls", "in", "--data", str(store), cwd=tmp_path)
    assert [(e["path"], e["size"]) for e in listed_in] == [("in/samples/a.txt", 6)]
    # An unknown run: one line, exit 2, nothing copied.
    _one_line_error(shoal("results", "--outputs", "99", "out2", cwd=tmp_path), "99")
    assert not (tmp_path / "out2").exists()


def test_bad_data_commands_say_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    write(tmp_path / "x.txt", "x\n")
    assert (
        shoal("data", "add", "x.txt", "sets/x.txt", "--data", store, cwd=tmp_path).returncode == 0
    )

    _one_line_error(
        shoal("data", "add", "nothere.txt", "--data", store, cwd=tmp_path), "nothere.txt"
    )
    _one_line_error(shoal("data", "add", "x.txt", "../x", "--data", store, cwd=tmp_path), "..")
    _one_line_error(
        shoal("data", "add", "x.txt", "bundles/x", "--data", store, cwd=tmp_path), "bundles/"
    )
    # A missing path: the message says what is there instead.
    _one_line_error(
        shoal("data", "get", "sets/y.txt", "--data", store, cwd=tmp_path), "sets/y.txt", "x.txt"
    )
    _one_line_error(shoal("data", "rm", "nope", "--data", store, cwd=tmp_path), "nope", "sets/")
    _one_line_error(shoal("data", "ls", "a/../b", "--data", store, cwd=tmp_path), "..")
    assert (tmp_path / "store" / "sets" / "x.txt").read_text() == "x\n"

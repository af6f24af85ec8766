"""The agent as one zipapp: runs with nothing but Python's standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shoal.launch.zipapp import agent_zipapp, zipapp_bytes
from tests.conftest import RunningBoss, wait_for


def test_the_zipapp_is_the_same_for_the_same_source_and_named_by_its_hash(
    tmp_path: Path,
) -> None:
    assert zipapp_bytes() == zipapp_bytes()
    first = agent_zipapp(tmp_path)
    again = agent_zipapp(tmp_path)
    assert first == again and first.name.startswith("shoal-agent-")
    assert first.stat().st_mode & 0o111  # executable
    help_text = subprocess.run(
        [sys.executable, "-I", "-S", str(first), "--help"], capture_output=True, text=True
    )
    assert help_text.returncode == 0, help_text.stderr
    assert "--boss" in help_text.stdout


def test_the_zipapp_works_as_a_worker_without_site_packages(
    tmp_path: Path, boss: RunningBoss
) -> None:
    from shoal import spec

    pyz = agent_zipapp(tmp_path / "agent")
    run_id = boss.boss.submit(
        spec.parse_text(
            "tasks:\n  - {name: a, run: 'echo 6'}\n  - {name: b, run: 'echo 7', after: [a]}\n",
            path="t.yaml",
        )
    )
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            # -I -S: no site-packages, no PYTHONPATH: only what the zipapp carries.
            [
                *(sys.executable, "-I", "-S", str(pyz)),
                *("--boss", boss.url, "--token", boss.token, "--slots", "1", "--idle-exit", "3"),
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        wait_for(
            lambda: boss.boss.scheduler.run_view(run_id)["state"] == "succeeded",
            what="the run on the zipapp worker",
        )
        assert boss.boss.scheduler.results(run_id) == {"a": 6, "b": 7}
        assert '"registered"' in (tmp_path / "worker.log").read_text()
    finally:
        worker.terminate()
        worker.wait(15)


def _imported_from(pyz: Path) -> dict[str, str]:
    """Which file of the zipapp each agent module was loaded from: its .pyc or its .py."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(pyz)!r})\n"
        "import shoal.agent.worker, shoal.agent.runner, shoal.protocol\n"
        "for name in ('shoal.agent.worker', 'shoal.agent.runner', 'shoal.protocol'):\n"
        "    print(name, sys.modules[name].__file__.rsplit('.', 1)[1])\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split() for line in out.splitlines())


def test_a_host_with_this_python_reads_the_bytecode_and_another_reads_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoal.launch import zipapp

    same = tmp_path / "same.pyz"
    same.write_bytes(zipapp._build())
    assert set(_imported_from(same).values()) == {"pyc"}
    # Built by a Python of another version: its bytecode cannot be read here.
    monkeypatch.setattr(zipapp.importlib.util, "MAGIC_NUMBER", b"\x00\x00\r\n")
    other = tmp_path / "other.pyz"
    other.write_bytes(zipapp._build())
    assert set(_imported_from(other).values()) == {"py"}
    help_text = subprocess.run(
        [sys.executable, "-I", "-S", str(other), "--help"], capture_output=True, text=True
    )
    assert help_text.returncode == 0 and "--boss" in help_text.stdout, help_text.stderr


def test_hosts_starting_at_once_all_get_the_zipapp(tmp_path: Path) -> None:
    # `shoal run --hosts` starts each host in a thread of its own: all ask at once.
    import threading

    zipapp_bytes()  # built already, so that the threads meet where the file is written
    for round_ in range(20):
        folder = tmp_path / str(round_)
        start = threading.Barrier(6)
        got: list[Path | BaseException] = []

        def ask(
            folder: Path = folder,
            start: threading.Barrier = start,
            got: list[Path | BaseException] = got,
        ) -> None:
            start.wait()
            try:
                got.append(agent_zipapp(folder))
            except BaseException as e:  # what the test reports
                got.append(e)

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(got)) == 1 and isinstance(got[0], Path), got
        assert [p.name for p in folder.iterdir()] == [got[0].name]

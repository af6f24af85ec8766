"""The agent as one zipapp: runs with nothing but Python's standard library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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

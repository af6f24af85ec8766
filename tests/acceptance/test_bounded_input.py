"""`shoal run` of a hostile task file: refused in one line, exit 2, no memory growth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import SRC, write
from tests.unit.test_spec_bounds import BOMB

# `shoal run FILE` in a child, and the peak memory of every process under it.
PEAK_OF_RUN = textwrap.dedent(
    """
    import json, resource, subprocess, sys
    proc = subprocess.run(
        [sys.executable, "-m", "shoal", "run", sys.argv[1]], capture_output=True, text=True
    )
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"code": proc.returncode, "stderr": proc.stderr, "peak_kb": peak}))
    """
)


def test_shoal_run_refuses_the_alias_bomb_in_one_line(tmp_path: Path) -> None:
    write(tmp_path / "bomb.yaml", BOMB)
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_OF_RUN, "bomb.yaml"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=SRC),
        capture_output=True,
        text=True,
        timeout=300,  # generous: it is refused at once, where the old code never ended
    )
    seen = json.loads(proc.stdout)
    assert seen["code"] == 2
    lines = seen["stderr"].splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("shoal: bomb.yaml:11: task 't': the document expands to more than")
    # Python, shoal and its imports take ~40 MB; the expansion would take gigabytes.
    assert seen["peak_kb"] < 150 * 1024, seen
    assert not (tmp_path / ".shoal" / "shoal.db").exists()  # nothing stored

"""A test that would skip for want of a tool fails in CI instead (tests/needs.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTEST = (sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.needs")

SKIPPING = """
import pytest
from tests.needs import needs

@needs("a tool nobody has", False)
def test_marked():
    pass

def test_skipping_inside():
    pytest.skip("no such tool here")

def test_running():
    pass
"""

SKIPPING_MODULE = """
import pytest
pytest.importorskip("no_module_of_that_name")

def test_never_collected():
    pass
"""


def _pytest(target: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [*PYTEST, str(target)],
        cwd=target.parent,
        env=env,
        capture_output=True,
        text=True,
    )


def test_a_missing_tool_skips_on_a_machine_and_fails_in_ci(tmp_path: Path) -> None:
    tests = tmp_path / "test_tools.py"
    tests.write_text(SKIPPING)
    here = _pytest(tests, ci=False)
    assert here.returncode == 0, here.stdout
    assert "1 passed, 2 skipped" in here.stdout
    ci = _pytest(tests, ci=True)
    assert ci.returncode == 1, ci.stdout
    # The mark skips before the test runs (an error in setup), the call from within it.
    assert "1 failed, 1 passed, 1 error" in ci.stdout and "skipped" not in ci.stdout
    assert "CI=true and this test would skip (needs a tool nobody has)" in ci.stdout
    assert "CI=true and this test would skip (no such tool here)" in ci.stdout


def test_a_module_that_skips_for_a_missing_package_fails_in_ci(tmp_path: Path) -> None:
    tests = tmp_path / "test_module.py"
    tests.write_text(SKIPPING_MODULE)
    assert "1 skipped" in _pytest(tests, ci=False).stdout
    ci = _pytest(tests, ci=True)
    assert ci.returncode != 0, ci.stdout
    assert "CI=true and this test would skip" in ci.stdout
    assert "no_module_of_that_name" in ci.stdout

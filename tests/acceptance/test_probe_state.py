"""Holes found by probing the user path of `shoal certs` and `shoal boss --mtls`."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Procs, shoal, start_boss


@pytest.fixture
def user_umask() -> Iterator[None]:
    """The umask most users have (022): folders are world-readable unless shoal says not."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_state_folder_is_private_when_shoal_certs_init_made_it(
    tmp_path: Path, procs: Procs, user_umask: None
) -> None:
    """README's three commands, in order: the boss's folder ends up 0700 all the same."""
    init = shoal("certs", "init", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    start_boss(procs, tmp_path, "--mtls")
    state = tmp_path / ".shoal"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700

"""An agent reads its token from the first line of its standard input, and no more."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import SRC


def test_only_the_tokens_line_is_read_and_the_lifeline_after_it_stays() -> None:
    from shoal.agent.client import read_token_line

    r, w = os.pipe()
    try:
        os.write(w, b"the-token\ndrain\n")
        assert read_token_line(r) == "the-token"
        assert os.read(r, 100) == b"drain\n"
    finally:
        os.close(r)
        os.close(w)


def test_a_worker_told_to_read_its_token_on_an_empty_stdin_says_so_in_one_line() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "shoal.agent",
            "--boss=http://127.0.0.1:9",
            "--token-file=/dev/stdin",
        ],
        input=b"",
        capture_output=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        | {"PYTHONPATH": SRC},
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        "shoal worker: no token on standard input (--token-file=/dev/stdin)\n"
    )

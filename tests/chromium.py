"""Debian's chromium as the tests and bench/dashboard.py drive it (never `playwright install`)."""

from __future__ import annotations

import shutil

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

# No sandbox (root in a container), and nothing that reaches the network on
# its own: the browser talks only to the boss on loopback.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

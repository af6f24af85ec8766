"""Where things live in a datastore: one tree, whatever backend holds it.

::

    <path as you named it>           inputs you added
    bundles/<sha256>.tar.gz          bundles
    runs/<run>/<task>/<file>         task outputs
    logs/<run>/<task>/<attempt>.log  attempts' logs
    .staging/<attempt>/<file>        outputs of an attempt not yet promoted (never listed)
    .integrity/<path>                size and sha256 of each file (never listed; see integrity)

Standard library only: the worker agent imports it (see ``shoal.protocol``).
"""

from __future__ import annotations

__all__ = [
    "BUNDLES",
    "DIGEST_HEADER",
    "LOGS",
    "OUTPUTS",
    "RECORDS",
    "STAGING",
    "bundle_path",
    "log_path",
    "origin",
    "output_prefix",
    "staging_prefix",
]

BUNDLES = "bundles/"
LOGS = "logs/"
OUTPUTS = "runs/"
# The folder of outputs not yet made visible (never listed).
STAGING = ".staging"
# The header of a download that carries the sha256 digests its file may have (integrity).
DIGEST_HEADER = "X-Shoal-Sha256"
# The folder of what was recorded of each file when it was written (never listed).
RECORDS = ".integrity"


def log_path(run_id: int, task: str, attempt_id: int) -> str:
    """Where an attempt's log lives."""
    return f"{LOGS}{run_id}/{task}/{attempt_id}.log"


def output_prefix(run_id: int, task: str) -> str:
    """The folder that holds a task's outputs."""
    return f"{OUTPUTS}{run_id}/{task}/"


def staging_prefix(attempt_id: int) -> str:
    """The folder where an attempt's outputs wait for its report to win its task."""
    return f"{STAGING}/{attempt_id}/"


def bundle_path(digest: str) -> str:
    """Where a bundle archive lives."""
    return f"{BUNDLES}{digest}.tar.gz"


def origin(path: str) -> str:
    """Where the file at a datastore path came from, for a message about it."""
    parts = path.split("/")
    if path.startswith(OUTPUTS) and len(parts) >= 4:
        return f"output of task '{parts[2]}' in run {parts[1]}"
    if path.startswith(BUNDLES):
        return "a run's bundle"
    if path.startswith(LOGS):
        return "an attempt's log"
    if path.startswith(STAGING + "/") and len(parts) >= 3:
        return f"output of attempt {parts[1]}, not yet promoted"
    return "an input added to the datastore"

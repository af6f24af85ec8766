"""The worker agent as one zipapp: what travels to a host that has only ``python3``.

The archive holds the agent's modules (standard library only) and a
``__main__`` that starts a worker. It is built deterministically (sorted
entries, fixed timestamps), so its name carries the hash of its content: a
host that already has ``shoal-agent-<hash>.pyz`` is not sent it again.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import zipfile
from pathlib import Path

import shoal

__all__ = ["AGENT_MODULES", "agent_zipapp", "zipapp_bytes"]

# Everything ``python3 shoal-agent.pyz`` imports from shoal.
AGENT_MODULES = (
    "shoal/__init__.py",
    "shoal/protocol.py",
    "shoal/exceptions.py",
    "shoal/datastore/__init__.py",
    "shoal/datastore/layout.py",
    "shoal/agent/__init__.py",
    "shoal/agent/bundles.py",
    "shoal/agent/client.py",
    "shoal/agent/logcap.py",
    "shoal/agent/runner.py",
    "shoal/agent/signs.py",
    "shoal/agent/start.py",
    "shoal/agent/usage.py",
    "shoal/agent/worker.py",
)

_MAIN = b"""from shoal.agent.start import run_then_exit

run_then_exit()
"""
_EPOCH = (1980, 1, 1, 0, 0, 0)
# Built once a process: compressing the modules takes 60-150 ms on a busy
# machine, on the way of every start; a second caller waits for the first.
_built: list[bytes] = []
_building = threading.Lock()


def zipapp_bytes() -> bytes:
    """The agent zipapp's bytes, the same for the same source (built once a process)."""
    with _building:
        if not _built:
            _built.append(_build())
        return _built[0]


def _build() -> bytes:
    root = Path(shoal.__file__).resolve().parent.parent
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        entries = [("__main__.py", _MAIN)]
        entries += [(name, (root / name).read_bytes()) for name in AGENT_MODULES]
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def agent_zipapp(folder: Path) -> Path:
    """The agent zipapp in ``folder``, named by its content's hash (built once)."""
    data = zipapp_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = folder / f"shoal-agent-{digest}.pyz"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.chmod(0o700)  # its folder is the private state folder
        os.replace(tmp, path)
    return path

"""The worker agent as one zipapp: what travels to a host that has only ``python3``.

The archive holds the agent's modules (standard library only) and a
``__main__`` that starts a worker. It is built deterministically (sorted
entries, fixed timestamps), so its name carries the hash of its content: a
host that already has ``shoal-agent-<hash>.pyz`` is not sent it again.

Each module also travels compiled, by the Python that builds it (an
unchecked hash-based ``.pyc`` beside its ``.py``): a host with the same
Python imports the bytecode and starts the agent about 40 ms sooner; any
other Python finds a bytecode it does not read (another magic number) and
compiles the source, as it would without it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import marshal
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
_writing = threading.Lock()


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
        entries += [(name + "c", _bytecode(name, source)) for name, source in entries[1:]]
        for name, data in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _bytecode(name: str, source: bytes) -> bytes:
    """A module's ``.pyc`` for zipimport: this Python's magic, unchecked hash-based.

    Hash-based, so the same source gives the same bytes (the zipapp's name
    is its content's hash); unchecked, as the source beside it in the
    archive never changes apart from it.
    """
    code = compile(source, name, "exec", dont_inherit=True)
    flags = 0b01  # hash-based, unchecked
    return (
        importlib.util.MAGIC_NUMBER
        + flags.to_bytes(4, "little")
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def agent_zipapp(folder: Path) -> Path:
    """The agent zipapp in ``folder``, named by its content's hash (built once)."""
    data = zipapp_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = folder / f"shoal-agent-{digest}.pyz"
    # One writer at a time in this process (each host's start asks at once);
    # the file's name is this process's own, beside another process writing it.
    with _writing:
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            tmp.chmod(0o700)  # its folder is the private state folder
            os.replace(tmp, path)
    return path

"""The datastore: inputs, outputs, logs and bundles, behind one small interface.

- :mod:`~shoal.datastore.layout`: where each kind of file lives (the agent
  imports it: standard library only, like this module);
- :mod:`~shoal.datastore.base`: :class:`~shoal.datastore.base.Datastore`,
  the interface (a few primitives, the rest derived);
- :mod:`~shoal.datastore.local`: the first backend, a local folder;
- :mod:`~shoal.datastore.logtail`: reading a stored log, or its last lines.

A new backend is a module here with a subclass of ``Datastore``, chosen in
:func:`open_datastore` and added to ``tests/integration/test_datastore_contract.py``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from shoal.datastore.layout import (
    BUNDLES,
    LOGS,
    OUTPUTS,
    STAGING,
    bundle_path,
    log_path,
    output_prefix,
    staging_prefix,
)

if TYPE_CHECKING:
    from shoal.datastore.base import Datastore

__all__ = [
    "BUNDLES",
    "LOGS",
    "OUTPUTS",
    "STAGING",
    "bundle_path",
    "log_path",
    "open_datastore",
    "output_prefix",
    "staging_prefix",
]


def open_datastore(location: str | os.PathLike[str]) -> Datastore:
    """The datastore at ``location``: a local folder (the only backend so far)."""
    from shoal.datastore.local import LocalDatastore

    return LocalDatastore(location)

"""The datastore: inputs, outputs, logs and bundles, behind one small interface.

- :mod:`~shoal.datastore.layout`: where each kind of file lives (the agent
  imports it: standard library only, like this module);
- :mod:`~shoal.datastore.base`: :class:`~shoal.datastore.base.Datastore`,
  the interface (a few primitives, the rest derived);
- :mod:`~shoal.datastore.integrity`: the size and sha256 recorded of each file;
- :mod:`~shoal.datastore.local`: a local folder (the default);
- :mod:`~shoal.datastore.remote`: any fsspec filesystem (S3, GCS, Azure, SFTP...);
- :mod:`~shoal.datastore.location`: a ``--data`` URL and its options, checked;
- :mod:`~shoal.datastore.logtail`: reading a stored log, or its last lines.

A new backend is a module here with a subclass of ``Datastore``, chosen in
:func:`open_datastore` and added to ``tests/integration/test_datastore_contract.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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


def open_datastore(
    location: str | os.PathLike[str], options: Mapping[str, str] | None = None
) -> Datastore:
    """The datastore at ``location``: a folder, ``file://...``, or any fsspec URL.

    ``options`` (``--data-option KEY=VALUE``) go to the URL's filesystem.
    BadInput for a URL with a password in it, an option naming a secret, or a
    library not installed (naming the extra to install); DatastoreError for
    one that cannot be reached.
    """
    from shoal.datastore.local import LocalDatastore
    from shoal.datastore.location import is_url, scrubbed, storage_options

    text = os.fspath(location)
    if not is_url(text):
        return LocalDatastore(text)
    if text.lower().startswith("file://") and not options:
        return LocalDatastore(text[len("file://") :] or "/")
    kwargs = storage_options(text, options or {})
    from shoal.datastore.remote import open_remote

    return open_remote(text, kwargs, scrubbed(text))

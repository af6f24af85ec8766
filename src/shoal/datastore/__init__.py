"""The datastore: inputs, outputs, logs and bundles behind one small interface."""

from shoal.datastore.local import LocalDatastore

__all__ = ["LocalDatastore"]

"""The command line's clients (:class:`Client`): of a running boss (:class:`BossClient`),
or of a state folder's database when none runs there (:class:`OfflineClient`)."""

from shoal.client.base import Client
from shoal.client.boss import BossClient
from shoal.client.offline import OfflineClient

__all__ = ["BossClient", "Client", "OfflineClient"]

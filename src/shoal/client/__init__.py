"""The command line's clients: of a running boss, or of a state folder's database."""

from shoal.client.boss import BossClient, OfflineClient

__all__ = ["BossClient", "OfflineClient"]

"""Machines and the agents on them: the launch contract and its providers.

* :mod:`~shoal.launch.contract`: :class:`Provider`, :class:`Machine`, :class:`Pool`,
  :class:`BossAccess`, :class:`Site`;
* :mod:`~shoal.launch.providers`: the providers by name (``local``, ``ssh``, the
  clouds, ``docker``, ``vagrant``);
* :mod:`~shoal.launch.fleet`: a launcher's machines, recorded and watched;
* :mod:`~shoal.launch.book`: where they are recorded (the boss's database);
* :mod:`~shoal.launch.pools`: the pools options give, and those remembered for ``--pool NAME``;
* :mod:`~shoal.launch.up`, :mod:`~shoal.launch.keeper`: ``shoal up`` and ``down``;
* :mod:`~shoal.launch.local`, :mod:`~shoal.launch.ssh`, :mod:`~shoal.launch.cloud`,
  :mod:`~shoal.launch.docker`, :mod:`~shoal.launch.vagrant`: the providers;
* :mod:`~shoal.launch.lifeline`: an agent held by a local command's standard input.
"""

from shoal.launch.contract import BossAccess, Machine, Pool, Provider, Site

__all__ = ["BossAccess", "Machine", "Pool", "Provider", "Site"]

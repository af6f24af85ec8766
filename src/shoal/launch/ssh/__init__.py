"""The ``ssh`` provider and the ssh commands: hosts of an inventory, through OpenSSH.

* :mod:`~shoal.launch.ssh.client`: the OpenSSH client for one host;
* :mod:`~shoal.launch.ssh.agent`: one worker agent on a host, over ssh;
* :mod:`~shoal.launch.ssh.provider`: the provider (a hosts inventory is a pool);
* :mod:`~shoal.launch.ssh.hosts`: ``shoal hosts check``, ``inject``, ``pull``, ``ssh``.
"""

from shoal.launch.ssh.client import SshFailed, SshHost, ssh_error
from shoal.launch.ssh.hosts import HostCheck, Injected, check_hosts, inject, pull, shell_argv
from shoal.launch.ssh.provider import HOSTS_POOL, SshProvider, pool_of

__all__ = [
    "HOSTS_POOL",
    "HostCheck",
    "Injected",
    "SshFailed",
    "SshHost",
    "SshProvider",
    "check_hosts",
    "inject",
    "pool_of",
    "pull",
    "shell_argv",
    "ssh_error",
]

"""Cloud VMs through Apache libcloud's compute API.

* :mod:`~shoal.launch.cloud.kinds`: each cloud's pool-file fields and where its
  credentials are read (no libcloud: read when a pool file is checked);
* :mod:`~shoal.launch.cloud.api`: :class:`~shoal.launch.cloud.api.Cloud`, four
  verbs (create, find, nodes, destroy) over one libcloud driver, and the
  :class:`~shoal.launch.cloud.api.NodeInfo` they return;
* :mod:`~shoal.launch.cloud.errors`: what a refused or failed API call becomes;
* :mod:`~shoal.launch.cloud.watchdog`: the VM's user-data, which authorises the
  user's key and powers the VM off when no agent has run on it for a while;
* one module per cloud (``aws``, ``gce``, ``azure``, ``digitalocean``,
  ``openstack``, ``opennebula``): the few details where the clouds differ.
"""

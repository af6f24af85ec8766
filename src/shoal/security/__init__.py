"""Security: the state folder's certificate authority and the boss's TLS.

* :mod:`~shoal.security.certs`: ``shoal certs``: a CA, the certificates it
  issued (servers, clients), their index and its revocation list;
* :mod:`~shoal.security.serving`: the boss's server-side SSL context (HTTPS,
  mutual TLS), which takes a new revocation list without a restart.
"""

from shoal.security.certs import CertAuthority, Issued
from shoal.security.serving import ServerTls, boss_certificate

__all__ = ["CertAuthority", "Issued", "ServerTls", "boss_certificate"]

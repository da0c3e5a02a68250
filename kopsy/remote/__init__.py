"""Remote commands: the one SSH doorway of kopsy, below validate and the day-2 operations.

``config`` finds where a host really is (ssh config, jump hosts), ``known_hosts`` keeps a
cluster's host keys (trust on first use, refuse a change), ``connection`` connects -- through
ProxyCommand (``proxy``), ProxyJump, a bastion or directly -- and runs commands with timeouts.
The layer neither knows nor cares whether a command reads or changes a host: validate uses it
read-only, day-2 operations (drain, cordon, etcd member removal, snapshot) use it to act.
"""

from kopsy.remote.config import DEFAULT_USER, Endpoint, SSHSettings, parse_hop
from kopsy.remote.connection import CommandResult, SSHConnection, SSHConnector, SSHUnreachable
from kopsy.remote.known_hosts import KnownHosts, fingerprint

__all__ = [
    "DEFAULT_USER",
    "CommandResult",
    "Endpoint",
    "KnownHosts",
    "SSHConnection",
    "SSHConnector",
    "SSHSettings",
    "SSHUnreachable",
    "fingerprint",
    "parse_hop",
]

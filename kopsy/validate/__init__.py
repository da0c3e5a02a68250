"""``kopsy validate``: is every node up and Ready, and if not, why.

- ``ssh``: the one SSH connection type (ssh config, jumps, per-cluster known-hosts).
- ``facts``: read-only facts (cloud describe calls, kubectl/bootstrap answers) and their parsers.
- ``checks``: pure functions from facts to failures.
- ``engine``: one validation run, returning a ``ValidationResult`` (``result``).
"""

from kopsy.validate.engine import validate_cluster
from kopsy.validate.result import Failure, NodeStatus, ValidationResult
from kopsy.validate.ssh import SSHConnector, SSHSettings

__all__ = ["Failure", "NodeStatus", "SSHConnector", "SSHSettings", "ValidationResult", "validate_cluster"]

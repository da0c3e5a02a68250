"""``kopsy validate``: is every node up and Ready, and if not, why.

- ``facts``: read-only facts (cloud describe calls, kubectl/bootstrap answers) and their parsers.
- ``checks``: pure functions from facts to failures.
- ``engine``: one validation run, returning a ``ValidationResult`` (``result``).

SSH comes from ``kopsy.remote`` (the connection layer validate shares with the day-2 commands);
validate only ever runs read-only commands through it.
"""

from kopsy.validate.engine import validate_cluster
from kopsy.validate.result import Failure, NodeStatus, ValidationResult

__all__ = ["Failure", "NodeStatus", "ValidationResult", "validate_cluster"]

"""The one exception tree of kopsy.

Every error a user can cause or meet carries a message written for that user: what is wrong
and what to do. The CLI layer turns a ``KopsyError`` into ``Error: <message>`` on one line and
``exit_code``; nothing below the CLI prints.
"""

from __future__ import annotations

import enum
from typing import Any


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2  # click's own code for usage errors; also "changes pending" with --detailed-exitcode
    CHANGES_PENDING = 2
    HANGUP = 129  # SIGHUP: 128 + signal number, as shells report it
    INTERRUPTED = 130  # SIGINT (Ctrl-C)
    TERMINATED = 143  # SIGTERM


class KopsyError(Exception):
    """Base of every user-facing error."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(KopsyError):
    """Flags or arguments that do not fit together (exit 2, as click does)."""

    exit_code = ExitCode.USAGE


class SpecInvalid(KopsyError):
    """A cluster or instance-group spec failed validation; ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:3]) if self.problems else "invalid spec"
        more = f" (and {len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        super().__init__(f"invalid spec: {shown}{more}")


class StateStoreError(KopsyError):
    """The state store cannot be read or written (missing bucket, access denied, bad URL)."""


class ObjectNotFound(StateStoreError):
    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        super().__init__(message or f"{key} not found in the state store")


class ObjectExists(StateStoreError):
    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        super().__init__(message or f"{key} already exists in the state store")


class WriteConflict(StateStoreError):
    """Somebody else changed an object between our read and our write (ETag mismatch)."""

    def __init__(self, key: str, message: str | None = None) -> None:
        self.key = key
        super().__init__(
            message
            or f"{key} was changed by someone else since it was read; nothing was written, re-run the command"
        )


class ClusterNotFound(KopsyError):
    def __init__(self, name: str, known: list[str] | None = None) -> None:
        self.name = name
        hint = f"; clusters in this store: {', '.join(known)}" if known else ""
        super().__init__(f'cluster "{name}" not found in the state store{hint}')


class ClusterExists(KopsyError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f'cluster "{name}" already exists in the state store; use "kopsy edit cluster {name}" '
            f'or "kopsy replace -f FILE" to change it'
        )


class LockHeld(KopsyError):
    """Another operator holds the cluster's lock."""

    def __init__(self, cluster: str, holder: dict[str, Any]) -> None:
        self.cluster = cluster
        self.holder = holder
        from kopsy.text import printable

        # Values read from the store: shown escaped and cut, so they cannot forge output lines.
        who = printable(holder.get("holder", "unknown"), 80)
        host = printable(holder.get("host", "unknown host"), 80)
        op = printable(holder.get("operation", "an operation"), 80)
        since = printable(holder.get("acquired", "?"), 40)
        expires = printable(holder.get("expires", "?"), 40)
        super().__init__(
            f'cluster "{cluster}" is locked by {who} on {host} running {op} since {since} '
            f"(expires {expires}); wait for it to finish, or if that process is dead run the "
            f"command again with --force-unlock"
        )


class CredentialsError(KopsyError):
    """No or expired AWS credentials."""


class AccessDenied(KopsyError):
    pass


class CloudError(KopsyError):
    """An AWS call failed in a way the user has to act on."""


class DeleteIncomplete(KopsyError):
    """Delete finished but resources carrying the cluster's tag remain."""

    def __init__(self, message: str, remaining: list[Any]) -> None:
        self.remaining = remaining
        super().__init__(message)


class ValidationFailed(KopsyError):
    """``kopsy validate cluster`` found the cluster not ready; ``result`` holds the details."""

    def __init__(self, message: str, result: Any = None) -> None:
        self.result = result
        super().__init__(message)


class SSHError(KopsyError):
    pass


class HostKeyChanged(SSHError):
    pass

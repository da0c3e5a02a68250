"""Before a control plane is terminated: an etcd snapshot, and its member removed.

Both run over SSH on a surviving control plane through ``kopsy.etcd.remote`` (the helper's
``etcd-snapshot`` and ``etcd-remove-member``, docs/disaster-recovery.md); this module only says
what a failure means for the roll: nothing was terminated.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from kopsy.errors import KopsyError
from kopsy.etcd.remote import EtcdCommandFailed, remove_member, snapshot
from kopsy.remote import SSHConnection


class EtcdGuardFailed(KopsyError):
    pass


def snapshot_and_remove(conn: SSHConnection, member: str, *, remove: bool = True) -> dict[str, Any]:
    """Take a snapshot and, when ``remove``, remove ``member`` (the node name = private DNS
    name). ``remove`` is False for the last control plane: etcd cannot remove its only member;
    the snapshot is what its replacement restores from."""
    try:
        snap = snapshot(conn)
        if remove:
            remove_member(conn, member)
    except EtcdCommandFailed as exc:
        raise EtcdGuardFailed(f"before replacing {member}: {exc.message}; nothing was terminated") from None
    return asdict(snap)

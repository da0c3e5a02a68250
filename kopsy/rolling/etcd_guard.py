"""Before a control plane is terminated: an etcd snapshot, and its member removed.

The contract with the etcd work (issue 15) is two commands of kopsy's on-instance helper, run
over SSH on a surviving control plane. They live in this ONE function so the merge can point
it at ``kopsy/etcd/remote.py`` without touching the roll.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from kopsy.errors import KopsyError
from kopsy.remote import SSHConnection

HELPER = "sudo /usr/local/lib/kopsy/kopsy-helper"


class EtcdGuardFailed(KopsyError):
    pass


def snapshot_and_remove(conn: SSHConnection, member: str, *, remove: bool = True) -> dict[str, Any]:
    """Take a snapshot (the helper's one JSON line) and, when ``remove``, remove ``member``
    (the node name = private DNS name). ``remove`` is False for the last control plane: etcd
    cannot remove its only member; the snapshot is what its replacement restores from."""
    snap = conn.run(f"{HELPER} etcd-snapshot", timeout=300)
    if not snap.ok:
        raise EtcdGuardFailed(f"etcd snapshot before replacing {member} failed ({snap.error or 'exit ' + str(snap.exit_status)}: "
                              f"{snap.stderr.strip()[-200:]}); nothing was terminated")
    try:
        doc = json.loads(snap.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise EtcdGuardFailed(f"etcd snapshot before replacing {member} printed no JSON line; nothing was terminated") from None
    if remove:
        r = conn.run(f"{HELPER} etcd-remove-member --name {shlex.quote(member)}", timeout=120)
        if not r.ok:
            raise EtcdGuardFailed(f"removing etcd member {member} failed ({r.error or 'exit ' + str(r.exit_status)}: "
                                  f"{r.stderr.strip()[-200:]}); nothing was terminated")
    return doc if isinstance(doc, dict) else {"snapshot": doc}

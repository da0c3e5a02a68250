"""etcd operations on a control plane over SSH: the commands the on-instance helper answers
(``kopsy-helper etcd-snapshot`` / ``etcd-remove-member``, docs/disaster-recovery.md), for
``kopsy backup etcd`` and for the rolling update before it terminates a control plane."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kopsy.errors import KopsyError, SSHError
from kopsy.spec.model import ROLE_CONTROL_PLANE

HELPER = "/usr/local/lib/kopsy/kopsy-helper"
SNAPSHOT_TIMEOUT = 600.0  # a large etcd (8 GB) takes minutes to snapshot and upload
REFUSED = 2  # the helper's exit code when a member removal would break quorum


class EtcdCommandFailed(KopsyError):
    """The helper on the control plane failed; the message carries its last line."""


class QuorumRefused(EtcdCommandFailed):
    """Removing the member would leave etcd below quorum, so the helper refused."""


@dataclass(frozen=True)
class Snapshot:
    timestamp: str
    key: str
    revision: int
    size: int
    sha256: str


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def parse_snapshot(stdout: str) -> Snapshot:
    """The helper's one JSON line (pure)."""
    try:
        doc = json.loads(_last_line(stdout))
        return Snapshot(str(doc["timestamp"]), str(doc["key"]), int(doc["revision"]), int(doc["size"]), str(doc["sha256"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise EtcdCommandFailed(f"etcd-snapshot answered something kopsy cannot read ({exc})") from None


def snapshot(conn: Any) -> Snapshot:
    """Take a snapshot on the control plane behind ``conn`` (an ``SSHConnection``), whether or
    not it leads etcd, and store it; returns what was stored."""
    r = conn.run(f"sudo {HELPER} etcd-snapshot", timeout=SNAPSHOT_TIMEOUT)
    if not r.ok:
        where = getattr(getattr(conn, "endpoint", None), "alias", "the control plane")
        raise EtcdCommandFailed(f"etcd snapshot on {where} failed: {_last_line(r.stderr or r.stdout)}")
    return parse_snapshot(r.stdout)


def remove_member(conn: Any, name: str) -> bool:
    """Remove etcd member ``name`` (a node name) through another control plane; True when it was
    removed, False when it was already gone. Raises ``QuorumRefused`` rather than break quorum."""
    r = conn.run(f"sudo {HELPER} etcd-remove-member --name {shlex.quote(name)}", timeout=120.0)
    if r.exit_status == REFUSED:
        raise QuorumRefused(f"etcd member {name} was not removed: {_last_line(r.stderr)}")
    if not r.ok:
        raise EtcdCommandFailed(f"removing etcd member {name} failed: {_last_line(r.stderr or r.stdout)}")
    try:
        return bool(json.loads(_last_line(r.stdout)).get("removed"))
    except (ValueError, AttributeError):
        raise EtcdCommandFailed(f"etcd-remove-member answered something kopsy cannot read: {_last_line(r.stdout)}") from None


def connect_control_plane(connector: Any, instances: Sequence[Any], *, private: bool = False) -> tuple[Any, Any]:
    """(connection, instance) of the first running control plane that accepts SSH."""
    from kopsy.validate.engine import ssh_address

    problems = []
    for inst in [i for i in instances if i.role == ROLE_CONTROL_PLANE]:
        try:
            return connector.connect(ssh_address(inst, private=private)), inst
        except SSHError as exc:
            problems.append(f"{inst.id}: {exc}")
    raise SSHError("no control plane accepts SSH" + (f" ({'; '.join(problems)})" if problems else " (none is running)"))

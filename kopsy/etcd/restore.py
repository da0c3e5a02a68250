"""``restore etcd``: put one snapshot back onto every control plane of a running cluster.

Steps, each over SSH on every control plane (the on-instance commands of
docs/disaster-recovery.md), in this order: park the static pods (etcd and the API servers
stop), restore the snapshot into a fresh data dir (every member with the same new cluster
token), bring etcd back, drop the stale API-server leases (once), bring everything back; then
wait until validate passes. Progress is recorded in ``<cluster>/restore-etcd.json`` after each
step on each control plane, so an interrupted run resumes where it stopped. No printing: the
CLI renders the ``on_step`` callback.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kopsy.errors import KopsyError, ObjectNotFound
from kopsy.etcd.remote import HELPER

STEPS = ("stop", "restore", "start-etcd", "drop-leases", "start")
PROGRESS = "restore-etcd.json"


class RestoreFailed(KopsyError):
    """A step failed on a control plane; the message names the step and says to re-run."""


@dataclass(frozen=True)
class Member:
    instance_id: str
    name: str  # the node name, which kubeadm gives the etcd member: the private DNS name
    ip: str
    address: str  # what the SSH layer is asked for


def members_of(instances: Sequence[Any], *, private: bool = False) -> list[Member]:
    """The running control planes as etcd members, in a stable order."""
    from kopsy.spec.model import ROLE_CONTROL_PLANE
    from kopsy.validate.engine import ssh_address

    cps = sorted((i for i in instances if i.role == ROLE_CONTROL_PLANE), key=lambda i: i.private_dns)
    return [Member(i.id, i.private_dns, i.private_ip, ssh_address(i, private=private)) for i in cps]


def step_command(step: str, member: Member, members: Sequence[Member], backup: str, token: str) -> str:
    """The command one step runs on ``member`` (pure)."""
    if step == "stop":
        return f"sudo {HELPER} etcd-static-pods stop"
    if step == "restore":
        initial = ",".join(f"{m.name}=https://{m.ip}:2380" for m in members)
        return (f"sudo {HELPER} etcd-restore --backup {shlex.quote(backup)} --name {shlex.quote(member.name)} "
                f"--peer-url https://{member.ip}:2380 --initial-cluster {shlex.quote(initial)} --token {shlex.quote(token)}")
    if step == "start-etcd":
        return f"sudo {HELPER} etcd-static-pods start-etcd"
    if step == "drop-leases":
        return f"sudo {HELPER} etcd-drop-apiserver-leases"
    if step == "start":
        return f"sudo {HELPER} etcd-static-pods start"
    raise ValueError(step)


def targets(step: str, members: Sequence[Member]) -> list[Member]:
    """The stale leases live in etcd, once for all: that step runs on the first member only."""
    return list(members[:1]) if step == "drop-leases" else list(members)


def plan_lines(cluster: str, backup: str, revision: int, members: Sequence[Member]) -> list[str]:
    names = ", ".join(f"{m.instance_id} ({m.name})" for m in members)
    return [
        f"Will restore etcd of cluster {cluster} from snapshot {backup} (revision {revision}) on {len(members)} "
        f"control plane(s): {names}",
        "  1. stop the API servers and etcd on every control plane (static pod manifests parked)",
        "  2. restore the snapshot into a fresh data dir on each, with a new cluster token "
        "(the current data dir is kept aside, not deleted)",
        "  3. start etcd",
        "  4. remove the stale API-server leases",
        "  5. start everything",
        "  6. wait until validate passes",
        "Downtime: the Kubernetes API is unavailable from step 1 until step 5 (typically a few minutes); "
        f"everything written to the cluster after {backup} is lost.",
    ]


class Progress:
    """The record of a restore in the store, so a re-run skips the steps already done."""

    def __init__(self, cluster_store: Any, cluster: str) -> None:
        self.store = cluster_store.store
        self.key = f"{cluster}/{PROGRESS}"
        self.etag: str | None = None
        self.doc: dict[str, Any] = {}

    def load(self) -> dict[str, Any] | None:
        try:
            obj = self.store.get(self.key)
        except ObjectNotFound:
            return None
        self.etag = obj.etag
        doc = json.loads(obj.data)
        self.doc = doc if isinstance(doc, dict) else {}
        return self.doc

    def save(self) -> None:
        data = json.dumps(self.doc, sort_keys=True).encode()
        self.etag = self.store.replace(self.key, data, self.etag) if self.etag else self.store.create(self.key, data)

    def done(self, step: str, member: Member) -> bool:
        return member.instance_id in self.doc.get("done", {}).get(step, [])

    def mark(self, step: str, member: Member) -> None:
        self.doc.setdefault("done", {}).setdefault(step, []).append(member.instance_id)
        self.save()

    def finish(self) -> None:
        self.store.delete(self.key)


def start_or_resume(progress: Progress, backup: str, members: Sequence[Member]) -> str:
    """The cluster token of this restore: new, or the interrupted one's (same backup and members)."""
    doc = progress.load()
    ids = sorted(m.instance_id for m in members)
    if doc is not None:
        if doc.get("backup") != backup or doc.get("members") != ids:
            raise RestoreFailed(
                f"an interrupted restore of snapshot {doc.get('backup')} onto {', '.join(doc.get('members') or [])} is "
                f"recorded in {progress.key}; run it again with --backup {doc.get('backup')} to finish it "
                f"(the control planes are in between)")
        return str(doc["token"])
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    token = "kopsy-restore-" + hashlib.sha256(f"{backup}/{started}".encode()).hexdigest()[:12]
    progress.doc = {"backup": backup, "members": ids, "token": token, "started": started, "done": {}}
    progress.save()
    return token


def run_restore(
    progress: Progress,
    backup: str,
    members: Sequence[Member],
    connect: Callable[[Member], Any],
    *,
    on_step: Callable[[str, Member, bool], None] | None = None,
    step_timeout: float = 900.0,
) -> None:
    """Run (or resume) every step on every member; raises ``RestoreFailed`` saying where it stopped."""
    if not members:
        raise RestoreFailed("no running control plane to restore onto")
    token = start_or_resume(progress, backup, members)
    conns: dict[str, Any] = {}
    try:
        for step in STEPS:
            for m in targets(step, members):
                if progress.done(step, m):
                    if on_step:
                        on_step(step, m, True)
                    continue
                try:
                    conn = conns.get(m.instance_id) or conns.setdefault(m.instance_id, connect(m))
                    r = conn.run(step_command(step, m, members, backup, token), timeout=step_timeout)
                except KopsyError as exc:
                    raise RestoreFailed(f"restore stopped at step {step!r} on {m.instance_id}: {exc.message}; "
                                        f"run the same command again to resume") from exc
                if not r.ok:
                    last = (r.error or (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"])
                    raise RestoreFailed(f"restore stopped at step {step!r} on {m.instance_id}: "
                                        f"{last if isinstance(last, str) else last[0]}; run the same command again to resume")
                progress.mark(step, m)
                if on_step:
                    on_step(step, m, False)
    finally:
        for c in conns.values():
            c.close()


def wait_valid(validate: Callable[[], bool], timeout: float, interval: float = 10.0) -> bool:
    """Poll ``validate`` until it passes or ``timeout`` seconds have gone (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if validate():
            return True
        if time.monotonic() + interval > deadline:
            return False
        time.sleep(interval)

"""The etcd snapshots in a cluster's state store: ``<cluster>/backups/etcd/<RFC 3339 UTC>/``
holds ``snapshot.db`` and ``meta.json`` (written by the control planes' ``kopsy-helper
etcd-snapshot``; layout in docs/disaster-recovery.md). Read-only: listing never changes anything."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from kopsy.cloud.aws.iam import ETCD_BACKUP_PREFIX
from kopsy.errors import KopsyError, ObjectNotFound
from kopsy.parallel import parallel

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class BackupNotFound(KopsyError):
    """The named snapshot is not in the store (or lacks its metadata)."""


@dataclass(frozen=True)
class Backup:
    timestamp: str
    size: int
    revision: int
    kubernetes_version: str
    members: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def age(timestamp: str, now: datetime | None = None) -> str:
    """'42s', '15m', '3h', '12d': how old a snapshot is, as kubectl shows ages."""
    secs = max(0, int(((now or datetime.now(timezone.utc)) - parse_time(timestamp)).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def parse_meta(timestamp: str, data: bytes) -> Backup:
    """One meta.json as the instance wrote it (pure); damaged metadata reads as zeros, not a crash."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    doc = doc if isinstance(doc, dict) else {}

    def num(key: str) -> int:
        v = doc.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    return Backup(timestamp, num("size"), num("revision"), str(doc.get("kubernetesVersion") or ""), num("members"),
                  str(doc.get("sha256") or ""))


def backup_timestamps(keys: list[str], cluster: str) -> list[str]:
    """Timestamps with both a snapshot and its metadata among store ``keys``, newest first (pure)."""
    found: dict[str, set[str]] = {}
    prefix = f"{cluster}/{ETCD_BACKUP_PREFIX}"
    for key in keys:
        if key.startswith(prefix):
            parts = key[len(prefix):].split("/")
            if len(parts) == 2 and TIMESTAMP.match(parts[0]):
                found.setdefault(parts[0], set()).add(parts[1])
    return sorted((ts for ts, names in found.items() if {"snapshot.db", "meta.json"} <= names), reverse=True)


def list_backups(cluster_store: Any, cluster: str) -> list[Backup]:
    """Every snapshot of ``cluster``, newest first (one list, then the metadata objects overlapped)."""
    store = cluster_store.store
    stamps = backup_timestamps(store.list(f"{cluster}/{ETCD_BACKUP_PREFIX}"), cluster)

    def read(ts: str) -> Backup:
        try:
            return parse_meta(ts, store.get(f"{cluster}/{ETCD_BACKUP_PREFIX}{ts}/meta.json").data)
        except ObjectNotFound:  # pruned between the list and the read
            return parse_meta(ts, b"{}")

    return list(parallel(read, stamps, workers=8, name="etcd-backups")) if stamps else []


def find_backup(cluster_store: Any, cluster: str, timestamp: str) -> Backup:
    if not TIMESTAMP.match(timestamp):
        raise BackupNotFound(f"--backup {timestamp[:40]!r} is not a snapshot timestamp like 2026-12-02T01:00:00Z "
                             f"(see kopsy get etcd-backups {cluster})")
    for b in list_backups(cluster_store, cluster):
        if b.timestamp == timestamp:
            return b
    raise BackupNotFound(f"cluster {cluster} has no etcd snapshot {timestamp} (see kopsy get etcd-backups {cluster})")

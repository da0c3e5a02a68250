"""The sandbox's etcd: the boot decision its control planes make, and the snapshots they take.

Nothing runs etcd in the sandbox; what the real control planes leave in the state store is
emulated there instead, so kopsy's own commands (``get etcd-backups``, ``restore etcd``) see
what they would see on AWS (docs/disaster-recovery.md):

- ``read_etcd_fact``: the snapshots and the first-boot record under ``backups/etcd/`` of a
  cluster's store (one list, one small read): a fact, read like the CA.
- ``boot_outcome`` (pure, used by ``rules``): a control plane in init mode that finds no other
  control plane before it restores the newest snapshot taken before it launched, or, on a
  cluster that booted before with no snapshot, fails phase ``restore`` with "no snapshot", as
  the real boot script does; only the first boot initialises.
- ``EtcdEmulator.tick`` (the supervisor's loop): for each cluster with a joined control plane,
  records the first boot and writes a snapshot every backup interval (the spec's, or
  ``interval_override`` seconds), labelled as emulated; ``snapshot_now`` answers
  ``kopsy-helper etcd-snapshot`` on a control plane.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kopsy.errors import KopsyError, ObjectExists

PREFIX = "backups/etcd/"
MARKER = PREFIX + "first-boot.json"
_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_UNITS = {"m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class EtcdStoreFact:
    snapshots: tuple[str, ...]  # timestamps with snapshot.db and meta.json, oldest first
    first_boot: str | None  # when first-boot.json says the cluster first booted ("" when unreadable); None: never
    error: str | None = None


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _stamp(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def snapshot_stamps(keys: list[str]) -> tuple[str, ...]:
    """Complete snapshots among a cluster store's keys (pure)."""
    found: dict[str, set[str]] = {}
    for key in keys:
        parts = key[len(PREFIX):].split("/") if key.startswith(PREFIX) else []
        if len(parts) == 2 and _TS.match(parts[0]):
            found.setdefault(parts[0], set()).add(parts[1])
    return tuple(sorted(ts for ts, n in found.items() if {"snapshot.db", "meta.json"} <= n))


def read_etcd_fact(store: Any) -> EtcdStoreFact:
    """``store``: the cluster's ObjectStore (rooted at its prefix)."""
    try:
        keys = store.list(PREFIX)
        first: str | None = None
        if MARKER in keys:
            try:
                first = str(json.loads(store.get(MARKER).data).get("firstBoot") or "")
            except (ValueError, AttributeError):
                first = ""
        return EtcdStoreFact(snapshot_stamps(keys), first)
    except KopsyError as exc:
        return EtcdStoreFact((), None, str(exc))


def boot_outcome(fact: EtcdStoreFact | None, launched: str, api_answers: bool) -> tuple[str, str | None]:
    """('join' | 'init' | 'restore' | 'fail', the snapshot restored or the failure) of an init-mode
    control plane, in the real script's order, from what the store held when it booted (pure): an
    instance launched before the first boot was recorded is that first boot."""
    if api_answers:
        return "join", None
    try:
        at = _parse(launched[:19] + "Z") if launched else None
        first = _parse(fact.first_boot) if fact is not None and fact.first_boot else None
    except ValueError:
        at = first = None
    if fact is None or fact.first_boot is None or (at is not None and first is not None and at <= first):
        return "init", None
    before = [ts for ts in fact.snapshots if at is None or _parse(ts) <= at]
    if before:
        return "restore", before[-1]
    return "fail", ("no snapshot: the cluster has booted before but the state store has no etcd snapshot; "
                    "not initialising a new, empty cluster (docs/disaster-recovery.md)")


def interval_seconds(text: str) -> int:
    m = re.match(r"^(\d+)([mhd])$", text or "")
    return int(m.group(1)) * _UNITS[m.group(2)] if m else 900


class EtcdEmulator:
    """What the control planes' etcd timers leave in the store, for the sandbox's clusters."""

    def __init__(self, store_for: Callable[[str], Any], interval_override: float = 0.0) -> None:
        self.store_for = store_for  # cluster store URL -> ObjectStore rooted there
        self.interval_override = interval_override
        self.members: dict[str, dict[str, tuple[str, str]]] = {}  # cluster -> etcd membership (update_members)
        self.removed: list[tuple[str, str]] = []  # (cluster, member) removed before a join, for the log

    def tick(self, world: Any, verdicts: dict[str, Any], now: datetime) -> list[str]:
        """Record first boots and take due snapshots; the keys written."""
        written: list[str] = []
        for cluster in sorted({i.cluster for i in world.instances if i.cluster}):
            self.members[cluster], gone = update_members(self.members.get(cluster, {}), world, verdicts, cluster)
            self.removed += [(cluster, name) for name in gone]
        for url, (cfg, nodes, members) in _joined_clusters(world, verdicts).items():
            store = self.store_for(url)
            fact = read_etcd_fact(store)
            if fact.error or "config" not in store.list("config"):  # a cluster being deleted leaves nothing behind
                continue
            if fact.first_boot is None:
                written += _create(store, MARKER, json.dumps({"firstBoot": _stamp(now), "node": nodes[0]}).encode())
            every = self.interval_override or interval_seconds(cfg.etcdBackupInterval)
            if not fact.snapshots or (now - _parse(fact.snapshots[-1])).total_seconds() >= every:
                written += self.write_snapshot(store, cfg, members, now)
        return written

    def write_snapshot(self, store: Any, cfg: Any, members: int, now: datetime) -> list[str]:
        ts = _stamp(now)
        body = f"kopsy sandbox: EMULATED etcd snapshot of {cfg.clusterName} at {ts} (not a real etcd database)\n".encode()
        meta = {"timestamp": ts, "revision": int(now.timestamp()) % 10_000_000, "members": members,
                "kubernetesVersion": cfg.kubernetesVersion, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        keys = _create(store, f"{PREFIX}{ts}/snapshot.db", body)
        keys += _create(store, f"{PREFIX}{ts}/meta.json", json.dumps(meta, sort_keys=True).encode())
        return keys

    def snapshot_now(self, world: Any, verdicts: dict[str, Any], instance_id: str, now: datetime) -> dict[str, Any]:
        """``kopsy-helper etcd-snapshot`` on a joined control plane: its one JSON line."""
        for url, (cfg, _nodes, members) in _joined_clusters(world, verdicts).items():
            if instance_id in _nodes_ids(world, verdicts, url):
                self.write_snapshot(self.store_for(url), cfg, members, now)
                store = self.store_for(url)
                ts = _stamp(now)
                meta = json.loads(store.get(f"{PREFIX}{ts}/meta.json").data)
                return {"timestamp": ts, "key": f"{PREFIX}{ts}/snapshot.db", "revision": meta["revision"],
                        "size": meta["size"], "sha256": meta["sha256"]}
        raise KopsyError("etcd is not running on this instance (it is not a joined control plane)")


HELPER = "/usr/local/lib/kopsy/kopsy-helper"


def etcd_answer(emulator: EtcdEmulator, world: Any, verdicts: dict[str, Any], instance_id: str, command: str,
                now: datetime) -> Any:
    """The on-instance etcd commands of the rolling-update contract, answered on a control plane;
    None for any other command (``answers`` handles those)."""
    from kopsy.sandbox.answers import Answer, command_argv

    argv = command_argv(command) or []
    if argv[:1] != [HELPER] or len(argv) < 2 or not argv[1].startswith("etcd-"):
        return None
    joined = {i.private_dns: i.id for i in world.instances if (v := verdicts.get(i.id)) is not None and v.joined
              and v.role == "ControlPlane" and i.state == "running"}
    if instance_id not in joined.values():
        return Answer("", "kopsy-helper: etcdctl endpoint status: connection refused (etcd is not running here)\n", 1)
    if argv[1:] == ["etcd-snapshot"]:
        try:
            return Answer(json.dumps(emulator.snapshot_now(world, verdicts, instance_id, now), sort_keys=True) + "\n")
        except KopsyError as exc:
            return Answer("", f"kopsy-helper: {exc}\n", 1)
    if argv[1:] == ["etcd-members"]:
        inst = next(i for i in world.instances if i.id == instance_id)
        members = emulator.members.get(inst.cluster or "", {})
        return Answer(json.dumps(member_report(members, world), sort_keys=True) + "\n")
    if argv[1:2] == ["etcd-remove-member"] and argv[2:3] == ["--name"] and len(argv) == 4:
        name = argv[3]
        if name not in joined:
            return Answer(json.dumps({"name": name, "removed": False}) + "\n",
                          f"kopsy-helper: etcd member {name} is not in the cluster (already removed)\n")
        if len(joined) == 1:
            return Answer("", f"kopsy-helper: removing etcd member {name} would leave 0 healthy of 0 members: below quorum, refused\n", 2)
        emulator.members.get(next(i.cluster or "" for i in world.instances if i.id == instance_id), {}).pop(name, None)
        return Answer(json.dumps({"name": name, "removed": True}) + "\n", f"kopsy-helper: removed etcd member {name}\n")
    if argv[1:2] == ["etcd-static-pods"] and argv[2:] in (["stop"], ["start-etcd"], ["start"]):
        return Answer("", f"kopsy sandbox: static pods {argv[2]} (emulated: nothing runs here)\n")
    if argv[1:] == ["etcd-drop-apiserver-leases"]:
        return Answer("", "kopsy sandbox: API-server leases dropped (emulated)\n")
    if argv[1:2] == ["etcd-restore"] and "--backup" in argv:
        inst = next(i for i in world.instances if i.id == instance_id)
        v = verdicts[instance_id]
        backup = argv[argv.index("--backup") + 1]
        fact = world.etcd.get(v.config.stateStore) if v.config else None
        if fact is None or backup not in fact.snapshots:
            return Answer("", f"kopsy-helper: HTTP 404 for GET backups/etcd/{backup}/meta.json: not in the state store\n", 1)
        return Answer(json.dumps({"timestamp": backup, "dataDir": "/var/lib/etcd", "node": inst.private_dns}) + "\n",
                      f"kopsy-helper: restored etcd snapshot {backup} (emulated)\n")
    return Answer("", f"kopsy sandbox: {' '.join(argv[:2])}: not emulated here\n", 127)


def update_members(members: dict[str, tuple[str, str]], world: Any, verdicts: dict[str, Any], cluster: str | None
                   ) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """One cluster's etcd membership after this poll (pure): ``members`` maps a member (node) name
    to (instance id, launch time). A control plane that joined becomes a member; before it does,
    it removes the members whose instances no longer run (the boot script's ``etcd-cleanup``
    runs before ``kubeadm join``), so a dead member stays only until a later control plane joins.
    Returns (members, the names removed)."""
    running = {i.id for i in world.instances if i.state == "running"}
    joined = sorted((i for i in world.instances if i.cluster == cluster and i.state == "running"
                     and (v := verdicts.get(i.id)) is not None and v.joined and v.role == "ControlPlane"),
                    key=lambda i: i.launch_time)
    out, removed = dict(members), []
    for inst in joined:
        if inst.private_dns in out:
            continue
        for name, (iid, launched) in list(out.items()):
            if iid not in running and launched < inst.launch_time:
                del out[name]
                removed.append(name)
        out[inst.private_dns] = (inst.id, inst.launch_time)
    return out, removed


def member_report(members: dict[str, tuple[str, str]], world: Any) -> list[dict[str, Any]]:
    """What ``kopsy-helper etcd-members`` prints for ``members`` (pure): a member whose instance
    no longer runs is started but not healthy."""
    running = {i.id for i in world.instances if i.state == "running"}
    return [{"name": name, "id": hashlib.sha256(iid.encode()).hexdigest()[:16], "started": True,
             "healthy": iid in running, "learner": False} for name, (iid, _) in sorted(members.items())]


def _create(store: Any, key: str, data: bytes) -> list[str]:
    try:
        store.create(key, data)
    except ObjectExists:  # the same second twice: that snapshot exists
        return []
    return [key]


def _joined_clusters(world: Any, verdicts: dict[str, Any]) -> dict[str, tuple[Any, list[str], int]]:
    """store URL -> (a joined control plane's config, joined control planes' node names, their count)."""
    out: dict[str, tuple[Any, list[str], int]] = {}
    for inst in sorted(world.instances, key=lambda i: i.launch_time):
        v = verdicts.get(inst.id)
        if v is None or not v.joined or v.role != "ControlPlane" or v.config is None:
            continue
        cfg, nodes, n = out.get(v.config.stateStore, (v.config, [], 0))
        out[v.config.stateStore] = (cfg, [*nodes, inst.private_dns], n + 1)
    return out


def _nodes_ids(world: Any, verdicts: dict[str, Any], url: str) -> set[str]:
    return {i.id for i in world.instances if (v := verdicts.get(i.id)) is not None and v.joined
            and v.role == "ControlPlane" and v.config is not None and v.config.stateStore == url}

"""``kopsy toolbox dump``: everything about a cluster that helps a bug report, and no secret.

Three reads, each the one kopsy already trusts for its own work:

- every cloud resource the cluster has, found by its tags as update and delete find them (kind,
  id, name, tags, and a state where AWS gives one);
- its instances, with their addresses and the launch-template version each was launched from
  (from the Auto Scaling groups, which record it per instance);
- when a control plane answers over SSH, the Kubernetes nodes it sees.

What is left out on purpose: resource *fields* (a launch template's user-data, a role's
policy) and everything in the state store's ``pki/`` and ``secrets/``. Tags and ids are not
secrets; nothing else is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.groups import read_groups

# Every state but terminated: a dump for a bug report wants the stopped and the dying too.
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")

DUMP_VERSION = "kopsy.io/v1alpha1"


@dataclass
class Dump:
    cluster: str
    region: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    instances: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "apiVersion": DUMP_VERSION,
            "kind": "ClusterDump",
            "cluster": self.cluster,
            "region": self.region,
            "resources": self.resources,
            "instances": self.instances,
            "nodes": self.nodes,
            "notes": self.notes,
        }


def _state(fields: dict[str, Any]) -> str:
    for key in ("state", "State", "status"):
        value = fields.get(key)
        if isinstance(value, str):
            return value
    return ""


def cloud_resources(clients: Any, cluster: str) -> list[dict[str, Any]]:
    """Every resource of every kind the cluster has, sorted by kind then name (no fields)."""
    from kopsy.cloud.aws.registry import ALL_KINDS
    from kopsy.reconcile.planner import gather_facts

    found = gather_facts(clients, cluster, kinds=ALL_KINDS)
    out = []
    for kind in ALL_KINDS:
        for a in sorted(found.get(kind.kind, []), key=lambda x: (x.name, x.id)):
            entry: dict[str, Any] = {"kind": a.kind, "id": a.id, "name": a.name, "tags": dict(sorted(a.tags.items()))}
            state = _state(a.fields)
            if state:
                entry["state"] = state
            out.append(entry)
    return out


def instances_of(clients: Any, cluster: str) -> list[dict[str, Any]]:
    """The cluster's instances (any state but terminated) with addresses, group and template
    version, read through the one groups-and-instances reader update and validate use."""
    inventory = read_groups(clients, cluster, filters=T.owner_filter(cluster), states=LIVE_STATES)
    launched: dict[str, dict[str, Any]] = {}
    for g in inventory.groups.values():
        for m in g.members:
            launched[m.id] = {
                "autoScalingGroup": g.name,
                "lifecycleState": m.lifecycle,
                "health": m.health,
                "launchTemplate": {"name": m.launch_template, "version": m.launch_template_version}
                if m.launch_template else None,
            }
    out = []
    for i in inventory.instances.values():
        entry: dict[str, Any] = {
            "id": i.id,
            "instanceGroup": i.instance_group,
            "role": i.role,
            "state": i.state,
            "type": i.instance_type,
            "zone": i.zone,
            "privateIp": i.private_ip,
            "privateDns": i.private_dns,
            "publicIp": i.public_ip,
            "imageId": i.image_id,
            "launchTime": i.launch_time,
        }
        entry.update(launched.get(i.id, {"autoScalingGroup": "", "launchTemplate": None}))
        out.append(entry)
    return sorted(out, key=lambda e: (e["instanceGroup"], e["id"]))


def nodes_via(connector: Any, control_planes: list[dict[str, Any]], *, private: bool) -> tuple[list[dict[str, Any]] | None, str]:
    """(nodes as a control plane's kubectl lists them, or None; a note saying why not).
    ``connector`` is a ``kopsy.validate.ssh.SSHConnector``; nothing but ``kubectl get nodes`` runs."""
    from kopsy.errors import SSHError
    from kopsy.validate.facts import CMD_NODES, FactError, parse_node_list

    if not control_planes:
        return None, "no running control-plane instance, so no nodes were listed"
    reasons = []
    for inst in control_planes:
        address = inst["privateIp"] if private or not inst["publicIp"] else inst["publicIp"]
        try:
            conn = connector.connect(address)
        except SSHError as exc:
            reasons.append(f"{inst['id']}: {exc}")
            continue
        try:
            result = conn.run(CMD_NODES)
            if not result.ok:
                reasons.append(f"{inst['id']}: kubectl get nodes failed")
                continue
            nodes = parse_node_list(result.stdout)
        except (SSHError, FactError) as exc:
            reasons.append(f"{inst['id']}: {exc}")
            continue
        finally:
            conn.close()
        return [
            {"name": n.name, "instanceId": n.instance_id, "controlPlane": n.control_plane, "ready": n.ready,
             **({"reason": n.reason} if n.reason else {})}
            for n in nodes
        ], ""
    return None, "no control plane answered over SSH, so no nodes were listed (" + "; ".join(reasons) + ")"


def dump_cluster(clients: Any, cluster: str, region: str, connector: Any | None = None, *, private: bool = False) -> Dump:
    """The whole dump; ``connector`` None skips the nodes (``--no-ssh``)."""
    out = Dump(cluster, region, cloud_resources(clients, cluster), instances_of(clients, cluster))
    if connector is None:
        out.notes.append("nodes were not listed (--no-ssh)")
        return out
    control_planes = [i for i in out.instances if i["role"] == "ControlPlane" and i["state"] == "running"]
    out.nodes, note = nodes_via(connector, control_planes, private=private)
    if note:
        out.notes.append(note)
    return out

"""The checks: pure functions from facts to failures.

Nothing here talks to AWS or SSH; the engine gathers the facts and calls these, which keeps
every rule testable with plain values and lets ``--wait`` re-run them on fresh facts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from kopsy.cloud.aws.groups import InstanceFacts, Inventory
from kopsy.cloud.aws.names import asg_name
from kopsy.spec.model import ROLE_CONTROL_PLANE, InstanceGroup
from kopsy.validate.facts import (
    CONTROL_PLANE_COMPONENTS,
    CRITICAL_PRIORITY_CLASSES,
    Diagnosis,
    NodeFacts,
    PodFacts,
)
from kopsy.validate.result import CONTROL_PLANE, INSTANCE_GROUP, MACHINE, NODE, POD, Failure, NodeStatus


def cluster_instances(igs: Sequence[InstanceGroup], cloud: Inventory, cluster_name: str) -> list[InstanceFacts]:
    """The running instances of the cluster's instance groups, control planes first, in a stable order.

    An instance belongs to a group when its ASG lists it or it carries the group's tag
    (an ASG listing can lag a fresh launch; a tag cannot be missing on a kopsy instance).
    """
    by_group: dict[str, str] = {}
    for ig in igs:
        g = cloud.groups.get(asg_name(ig.name, cluster_name))
        for iid in g.in_service if g else ():
            by_group[iid] = ig.name
    names = {ig.name for ig in igs}
    roles = {ig.name: ig.role for ig in igs}
    out = []
    for inst in cloud.instances.values():
        group = by_group.get(inst.id) or (inst.instance_group if inst.instance_group in names else "")
        if not group or inst.state != "running":
            continue
        if group != inst.instance_group or not inst.role:
            inst = replace(inst, instance_group=group, role=inst.role or roles[group])
        out.append(inst)
    out.sort(key=lambda i: (i.role != ROLE_CONTROL_PLANE, i.instance_group, i.private_dns, i.id))
    return out


def check_groups(igs: Sequence[InstanceGroup], cloud: Inventory, cluster_name: str) -> list[Failure]:
    """Check 1: each instance group's ASG exists and has at least minSize running instances."""
    failures = []
    running = {i.id for i in cloud.instances.values() if i.state == "running"}
    for ig in igs:
        name = asg_name(ig.name, cluster_name)
        g = cloud.groups.get(name)
        if g is None:
            failures.append(Failure(INSTANCE_GROUP, ig.name, f"auto scaling group {name} does not exist; "
                                    f"run 'kopsy update cluster {cluster_name} --yes' to create it"))
            continue
        count = sum(1 for iid in g.in_service if iid in running)
        if count < ig.min_size:
            failures.append(Failure(INSTANCE_GROUP, ig.name, f"instance group {ig.name} has {count} running "
                                    f"instance(s), fewer than its minSize {ig.min_size}"))
    return failures


@dataclass
class NodeCheck:
    failures: list[Failure] = field(default_factory=list)
    nodes: list[NodeStatus] = field(default_factory=list)
    broken: list[InstanceFacts] = field(default_factory=list)  # not joined or NotReady: diagnose these


def match_nodes(instances: Sequence[InstanceFacts], nodes: Sequence[NodeFacts]) -> dict[str, NodeFacts]:
    """Instance id -> its Kubernetes node, by providerID first, else by private DNS name."""
    by_id = {n.instance_id: n for n in nodes if n.instance_id}
    by_name = {n.name: n for n in nodes}
    out = {}
    for inst in instances:
        node = by_id.get(inst.id) or (by_name.get(inst.private_dns) if inst.private_dns else None)
        if node is not None:
            out[inst.id] = node
    return out


def check_nodes(instances: Sequence[InstanceFacts], nodes: Sequence[NodeFacts], pods: Sequence[PodFacts]) -> NodeCheck:
    """Check 3: every instance joined and Ready, control planes run their components, critical pods run."""
    result = NodeCheck()
    matched = match_nodes(instances, nodes)
    for inst in instances:
        node = matched.get(inst.id)
        label = f"{inst.id} (group {inst.instance_group}, {inst.private_dns or inst.private_ip})"
        if node is None:
            result.failures.append(Failure(MACHINE, inst.id, f"machine {label} has not joined the cluster",
                                           instance_id=inst.id))
            result.broken.append(inst)
            result.nodes.append(NodeStatus(inst.private_dns or inst.id, inst.id, inst.role, inst.instance_group, False))
            continue
        result.nodes.append(NodeStatus(node.name, inst.id, inst.role, inst.instance_group, node.ready))
        if not node.ready:
            why = ": ".join(p for p in (node.reason, node.message) if p)
            result.failures.append(Failure(NODE, node.name, f"node {node.name} ({inst.id}, group "
                                           f"{inst.instance_group}) is not Ready" + (f": {why}" if why else ""),
                                           instance_id=inst.id))
            result.broken.append(inst)
        if inst.role == ROLE_CONTROL_PLANE or node.control_plane:
            missing = missing_components(node.name, pods)
            if missing:
                result.failures.append(Failure(CONTROL_PLANE, node.name, f"control-plane node {node.name} is not "
                                               f"running {', '.join(missing)}"))
    known = {n.name for n in matched.values()}
    for node in nodes:  # registered nodes with no instance of ours: show them, don't judge them
        if node.name not in known:
            result.nodes.append(NodeStatus(node.name, node.instance_id,
                                           ROLE_CONTROL_PLANE if node.control_plane else "Node", "", node.ready))
    result.failures.extend(check_pods(pods))
    return result


def missing_components(node_name: str, pods: Sequence[PodFacts]) -> list[str]:
    """Which of apiserver/controller-manager/scheduler/etcd have no pod on this node."""
    present = set()
    for p in pods:
        for comp in CONTROL_PLANE_COMPONENTS:
            if p.name == f"{comp}-{node_name}" or (p.component == comp and p.node_name == node_name):
                present.add(comp)
    return [c for c in CONTROL_PLANE_COMPONENTS if c not in present]


def check_pods(pods: Sequence[PodFacts]) -> list[Failure]:
    """Every system-cluster-critical / system-node-critical pod must be Running and Ready."""
    failures = []
    for p in pods:
        if p.priority_class not in CRITICAL_PRIORITY_CLASSES:
            continue
        if p.phase == "Running" and p.ready:
            continue
        where = f" on {p.node_name}" if p.node_name else " (not scheduled)"
        state = p.phase if p.phase != "Running" else "Running but not Ready"
        why = f" ({p.reason})" if p.reason else ""
        failures.append(Failure(POD, f"kube-system/{p.name}", f"{p.priority_class} pod {p.name}{where} is {state}{why}"))
    return failures


def explain(failure: Failure, diagnosis: Diagnosis) -> Failure:
    """Check 4: add what the instance says about itself to a Machine/Node failure."""
    base = failure.message.rstrip(". ")
    if not diagnosis.reachable:
        return Failure(failure.type, failure.name,
                       f"{base}; it cannot be reached over SSH: {diagnosis.unreachable_reason}",
                       instance_id=failure.instance_id)
    parts = []
    if diagnosis.error:
        parts.append(f"bootstrap failed in phase {diagnosis.phase or '?'}: {diagnosis.error}")
    elif diagnosis.phase:
        when = f", updated {diagnosis.updated}" if diagnosis.updated else ""
        parts.append(f"bootstrap is at phase {diagnosis.phase} with no error{when}")
    elif "no such file" in diagnosis.bootstrap_state_missing.lower() or not diagnosis.bootstrap_state_missing:
        parts.append("the kopsy bootstrap has not started (no /var/lib/kopsy/bootstrap.json)")
    else:
        parts.append(f"could not read /var/lib/kopsy/bootstrap.json: {diagnosis.bootstrap_state_missing}")
    if diagnosis.cloud_init_status or diagnosis.cloud_init_detail:
        ci = f"cloud-init {diagnosis.cloud_init_status or 'status unknown'}"
        if diagnosis.cloud_init_detail and diagnosis.cloud_init_status not in ("done",):
            ci += f" ({diagnosis.cloud_init_detail})"
        parts.append(ci)
    details = [f"bootstrap log: {line}" for line in diagnosis.log_tail]
    return Failure(failure.type, failure.name, f"{base}: {'; '.join(parts)}", details,
                   failure.instance_id)

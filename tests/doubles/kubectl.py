"""TEST DOUBLE: what ``kubectl get nodes -o json`` and ``kubectl get pods -n kube-system -o json``
print on a control plane, built from a few plain values per node.

``node_list(nodes)`` / ``pod_list(nodes)`` take ``KubeNode`` values (name = the EC2 private DNS
name, as kubeadm registers it on AWS) and return the JSON text. Like real kubectl, the answer
is a ``kind: List`` (not ``NodeList``/``PodList``) of v1 objects; a node carries
``spec.providerID`` ``aws:///<zone>/<instance id>``, the control-plane role label, and a Ready
condition (``True``/``False`` with the kubelet's reason, or ``Unknown``); the pods are the
static control-plane pods per control plane, kube-proxy and the CNI daemon per node, and two
coredns replicas on the last node, all Running and Ready (a test that wants a broken pod
edits the answer). ``tests/test_doubles.py`` holds these answers to what
kopsy's parsers read and to the sandbox's own node answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
NOT_READY_MESSAGE = ("container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
                     "message:Network plugin returns error: cni plugin not initialized")


@dataclass(frozen=True)
class KubeNode:
    name: str  # the private DNS name
    instance_id: str
    zone: str
    private_ip: str
    control_plane: bool = False
    ready: str = "True"  # "True" | "False" (kubelet NotReady) | "Unknown" (stopped posting status)


def _list(items: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})


def _ready_condition(ready: str) -> dict[str, str]:
    if ready == "True":
        return {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"}
    if ready == "Unknown":
        return {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown", "message": "Kubelet stopped posting node status."}
    return {"type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": NOT_READY_MESSAGE}


def node(n: KubeNode) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": n.name, "topology.kubernetes.io/zone": n.zone}
    spec: dict[str, Any] = {"providerID": f"aws:///{n.zone}/{n.instance_id}"}
    if n.control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
        spec["taints"] = [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane"}]
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n.name, "labels": labels},
            "spec": spec,
            "status": {"conditions": [_ready_condition(n.ready)],
                       "addresses": [{"type": "InternalIP", "address": n.private_ip},
                                     {"type": "InternalDNS", "address": n.name}]}}


def node_list(nodes: Iterable[KubeNode]) -> str:
    return _list([node(n) for n in nodes])


def pod(name: str, node_name: str, priority: str, component: str = "", ready: bool = True) -> dict[str, Any]:
    labels = {"component": component, "tier": "control-plane"} if component else {"k8s-app": name.rsplit("-", 1)[0]}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "kube-system", "labels": labels},
            "spec": {"nodeName": node_name, "priorityClassName": priority},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def pod_list(nodes: Iterable[KubeNode], cni: str = "calico-node") -> str:
    items = []
    joined = list(nodes)
    for i, n in enumerate(joined):
        if n.control_plane:
            for comp in CONTROL_PLANE_COMPONENTS:
                items.append(pod(f"{comp}-{n.name}", n.name, "system-node-critical", comp))
        items.append(pod(f"kube-proxy-{i:05x}", n.name, "system-node-critical"))
        items.append(pod(f"{cni}-{i:05x}", n.name, "system-node-critical"))
    if joined:
        for j in range(2):
            items.append(pod(f"coredns-5d78c9869d-{j:05x}", joined[-1].name, "system-cluster-critical"))
    return _list(items)

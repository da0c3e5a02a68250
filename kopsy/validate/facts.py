"""Facts validate reads: what the cloud says, what Kubernetes says, what a node says about itself.

Each fact is one batched read (a filtered describe call, one remote command) plus a pure
function turning the raw answer into a typed value. Finding never changes anything, so these
functions are safe to run against a production cluster as often as ``--wait`` likes.

The cloud facts (Auto Scaling groups and their instances) come from the reader validate shares
with update and the day-2 commands, ``kopsy.cloud.aws.groups``; the Kubernetes and node facts
are here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

KUBECTL = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf"
CMD_NODES = f"{KUBECTL} get nodes -o json"
CMD_PODS = f"{KUBECTL} get pods -n kube-system -o json"
CMD_BOOTSTRAP_STATE = "sudo cat /var/lib/kopsy/bootstrap.json"
CMD_CLOUD_INIT = "cloud-init status --long"
CMD_LOG_TAIL = "sudo tail -n 20 /var/log/kopsy-bootstrap.log"
DIAGNOSIS_COMMANDS = (CMD_BOOTSTRAP_STATE, CMD_CLOUD_INIT, CMD_LOG_TAIL)

CONTROL_PLANE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
CRITICAL_PRIORITY_CLASSES = ("system-cluster-critical", "system-node-critical")
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


class FactError(ValueError):
    """A remote answer that is not in the expected format (the message says what was wrong)."""


# --- kubernetes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFacts:
    name: str
    instance_id: str  # from spec.providerID aws:///<zone>/<id>, "" if absent
    control_plane: bool
    ready: bool
    reason: str = ""
    message: str = ""
    kubelet_version: str = ""  # status.nodeInfo.kubeletVersion, e.g. v1.36.2
    unschedulable: bool = False  # cordoned


@dataclass(frozen=True)
class PodFacts:
    name: str
    node_name: str
    priority_class: str
    phase: str
    ready: bool
    component: str = ""  # the static pod's "component" label (kube-apiserver, etcd, ...)
    reason: str = ""


def _load_list(text: str, kind: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FactError(f"kubectl did not return JSON for the {kind} ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise FactError(f"kubectl returned no {kind} list (no 'items')")
    return [i for i in doc["items"] if isinstance(i, dict)]


def instance_id_from_provider_id(provider_id: str) -> str:
    """'aws:///us-east-1a/i-0abc' -> 'i-0abc' (the form the AWS cloud provider writes)."""
    if not provider_id.startswith("aws://"):
        return ""
    last = provider_id.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith("i-") else ""


def _condition(conditions: Any, kind: str) -> dict[str, Any]:
    for c in conditions or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return {}


def parse_node_list(text: str) -> list[NodeFacts]:
    """A v1 NodeList (``kubectl get nodes -o json``) -> NodeFacts."""
    nodes = []
    for item in _load_list(text, "nodes"):
        meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        labels = meta.get("labels") or {}
        ready = _condition(status.get("conditions"), "Ready")
        nodes.append(
            NodeFacts(
                name=str(meta.get("name", "")),
                instance_id=instance_id_from_provider_id(str(spec.get("providerID", ""))),
                control_plane=any(label in labels for label in CONTROL_PLANE_LABELS),
                ready=ready.get("status") == "True",
                reason=str(ready.get("reason", "") or ("no Ready condition yet" if not ready else "")),
                message=str(ready.get("message", "") or ""),
                kubelet_version=str((status.get("nodeInfo") or {}).get("kubeletVersion", "") or ""),
                unschedulable=bool(spec.get("unschedulable", False)),
            )
        )
    return nodes


def parse_pod_list(text: str) -> list[PodFacts]:
    """A v1 PodList (``kubectl get pods -n kube-system -o json``) -> PodFacts."""
    pods = []
    for item in _load_list(text, "pods"):
        meta, spec, status = item.get("metadata") or {}, item.get("spec") or {}, item.get("status") or {}
        ready = _condition(status.get("conditions"), "Ready")
        reason = str(status.get("reason", "") or ready.get("reason", "") or "")
        pods.append(
            PodFacts(
                name=str(meta.get("name", "")),
                node_name=str(spec.get("nodeName", "") or ""),
                priority_class=str(spec.get("priorityClassName", "") or ""),
                phase=str(status.get("phase", "") or "Unknown"),
                ready=ready.get("status") == "True",
                component=str((meta.get("labels") or {}).get("component", "")),
                reason=reason,
            )
        )
    return pods


# --- a node's own account of its bootstrap ----------------------------------------------------


@dataclass(frozen=True)
class Diagnosis:
    """Why an instance is not (yet) a Ready node, from the instance itself."""

    reachable: bool
    unreachable_reason: str = ""
    phase: str = ""
    error: str = ""
    updated: str = ""
    bootstrap_state_missing: str = ""  # why bootstrap.json could not be read, if it could not
    cloud_init_status: str = ""
    cloud_init_detail: str = ""
    log_tail: tuple[str, ...] = ()


def parse_bootstrap_state(text: str) -> tuple[str, str, str]:
    """/var/lib/kopsy/bootstrap.json -> (phase, error, updated)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FactError(f"bootstrap.json is not JSON ({exc.msg})") from exc
    if not isinstance(doc, dict):
        raise FactError("bootstrap.json is not a JSON object")
    return str(doc.get("phase") or ""), str(doc.get("error") or ""), str(doc.get("updated") or "")


def parse_cloud_init_status(text: str) -> tuple[str, str]:
    """``cloud-init status --long`` -> (status, detail).

    The text is ``key: value`` lines whose values may continue on indented or bare lines
    (``detail:`` then the datasource or the error on 22.x; ``errors:`` then ``- ...`` items on
    23.x and later). The errors say why, so they are preferred over ``detail``.
    """
    values: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key and not line[0].isspace() and " " not in key and not key.startswith(("(", "-")):
            current = key
            values[current] = [value.strip()] if value.strip() else []
        elif current and line.strip():
            values.setdefault(current, []).append(line.strip().removeprefix("- "))
    status = " ".join(values.get("status", []))
    errors = [e for e in values.get("errors", []) if e not in ("[]", "")]
    detail = errors or values.get("detail", [])
    return status, "; ".join(detail)


def diagnosis_from_results(stdouts: dict[str, tuple[int, str, str, str | None]]) -> Diagnosis:
    """Turn the three diagnosis commands' (exit, stdout, stderr, error) into a Diagnosis."""
    phase = error = updated = missing = ""
    code, out, err, fail = stdouts[CMD_BOOTSTRAP_STATE]
    if fail or code != 0:
        missing = fail or (err.strip().splitlines() or [f"exit status {code}"])[-1]
    else:
        try:
            phase, error, updated = parse_bootstrap_state(out)
        except FactError as exc:
            missing = str(exc)
    ci_status = ci_detail = ""
    code, out, err, fail = stdouts[CMD_CLOUD_INIT]
    if fail:
        ci_detail = fail
    elif out.strip():
        ci_status, ci_detail = parse_cloud_init_status(out)
    elif err.strip():
        ci_detail = err.strip().splitlines()[-1]
    code, out, err, fail = stdouts[CMD_LOG_TAIL]
    tail = tuple(line for line in out.splitlines() if line.strip())
    return Diagnosis(
        reachable=True, phase=phase, error=error, updated=updated, bootstrap_state_missing=missing,
        cloud_init_status=ci_status, cloud_init_detail=ci_detail, log_tail=tail,
    )

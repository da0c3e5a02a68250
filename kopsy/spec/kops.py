"""kops' own manifests (``kops.k8s.io/v1alpha2`` Cluster and InstanceGroup) as kopsy documents.

A kops user brings ``kops get cluster -o yaml`` or ``kops create cluster --dry-run -o yaml``
output. Each field kopsy can honour is converted into kopsy's form (``kopsy.io/v1alpha1``), the
bookkeeping ones (``configBase``, ``channel``, ``creationTimestamp``) are dropped with a note,
and *every* other field is collected: if there is any, the whole file is refused in one error
that lists every field path, and nothing is written. A value kopsy cannot honour (a Private
subnet, ``anonymousAuth: true``) is refused the same way, with its path and the value.

Pure: no AWS, no store. ``image: <owner>/<name>`` stays as it is; it is looked up at update
(DescribeImages by name, restricted to that owner).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from kopsy.errors import SpecInvalid
from kopsy.spec.model import API_VERSION, KIND_CLUSTER, KIND_INSTANCE_GROUP, NETWORKING_PROVIDERS

KOPS_API_VERSIONS = ("kops.k8s.io/v1alpha2",)
KOPS_CLUSTER_LABEL = "kops.k8s.io/cluster"
KOPS_IG_LABEL = "kops.k8s.io/instancegroup"
ROLES = {"Master": "ControlPlane", "ControlPlane": "ControlPlane", "Node": "Node", "Bastion": "Bastion"}


class KopsManifestUnsupported(SpecInvalid):
    """A kops manifest with fields kopsy cannot honour; the message lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.message = (
            f"this kops manifest has {len(problems)} field(s) kopsy cannot honour, so nothing was written: "
            + "; ".join(problems)
            + " (remove or change them and retry; see docs/kops-manifests.md)"
        )


@dataclass
class Conversion:
    """The converted documents (kopsy form, in the input's order) and notes for the user."""

    documents: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def is_kops_document(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("apiVersion") in KOPS_API_VERSIONS


class _Walk:
    """Takes fields out of a kops mapping; what is left at the end is unsupported."""

    def __init__(self, where: str, problems: list[str], notes: list[str]) -> None:
        self.where = where
        self.problems = problems
        self.notes = notes

    def refuse(self, path: str, why: str) -> None:
        self.problems.append(f"{self.where}{path}: {why}")

    def note(self, text: str) -> None:
        self.notes.append(f"{self.where}{text}")

    def leftovers(self, data: dict[str, Any], path: str) -> None:
        for key in data:
            self.refuse(f"{path}.{key}" if path else key, "not supported by kopsy")

    def mapping(self, data: Any, path: str) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.refuse(path, f"expected a mapping, got {type(data).__name__}")
            return {}
        return dict(data)

    def expect(self, data: dict[str, Any], key: str, path: str, allowed: tuple[Any, ...], why: str) -> Any:
        """Pop ``key``; a value outside ``allowed`` is refused with ``why``."""
        if key not in data:
            return None
        value = data.pop(key)
        if value not in allowed:
            self.refuse(f"{path}.{key}", f"{value!r} is not supported ({why})")
        return value


def _access(w: _Walk, values: Any, path: str) -> list[str] | None:
    """IPv4 CIDRs as they are; IPv6 ones dropped with a note (kopsy's rules are IPv4 only)."""
    if values is None:
        return None
    if not isinstance(values, list):
        w.refuse(path, "expected a list of CIDRs")
        return None
    kept = []
    for i, v in enumerate(values):
        try:
            net = ipaddress.ip_network(str(v), strict=False)
        except ValueError:
            kept.append(str(v))  # kopsy's validation reports it with its path
            continue
        if net.version == 6:
            w.note(f"{path}[{i}]: IPv6 entry {v} dropped: kopsy's security groups have IPv4 rules only")
        else:
            kept.append(str(v))
    return kept


_GO_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _kopsy_duration(w: _Walk, value: Any, path: str) -> str | None:
    """A Go duration ('15m0s', '1h') as kopsy's spec.etcd writes it ('15m', '1h'); whole minutes only."""
    m = _GO_DURATION.match(str(value))
    if not m or not any(m.groups()):
        w.refuse(path, f"{value!r} is not a duration like 15m0s")
        return None
    secs = int(m.group(1) or 0) * 3600 + int(m.group(2) or 0) * 60 + int(m.group(3) or 0)
    if secs % 60:
        w.refuse(path, f"{value!r}: kopsy snapshots at whole minutes")
        return None
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0:
            return f"{secs // size}{unit}"
    return None


def _etcd(w: _Walk, clusters: Any, path: str, cluster_name: str = "") -> dict[str, Any]:
    """kops' etcd clusters describe etcd on every control plane, which is what kopsy (kubeadm's
    stacked etcd) runs. The main cluster's etcd-manager backup interval and retention become
    ``spec.etcd``; sizing is not kopsy's to apply, so it is noted; a backup store elsewhere than
    kops' own layout is refused (kopsy keeps snapshots in its state store)."""
    out: dict[str, Any] = {}
    if not isinstance(clusters, list):
        w.refuse(path, "expected a list")
        return out
    ignored: set[str] = set()
    for i, raw in enumerate(clusters):
        at = f"{path}[{i}]"
        c = w.mapping(raw, at)
        w.expect(c, "name", at, ("main", "events"), "kopsy runs kubeadm's one stacked etcd cluster")
        for member_i, m in enumerate(c.pop("etcdMembers", None) or []):
            mat = f"{at}.etcdMembers[{member_i}]"
            m = w.mapping(m, mat)
            m.pop("name", None)
            m.pop("instanceGroup", None)
            if m.pop("encryptedVolume", None) is not None:
                ignored.add("encryptedVolume")
            w.leftovers(m, mat)
        for key in ("cpuRequest", "memoryRequest"):
            if c.pop(key, None) is not None:
                ignored.add(key)
        main = raw.get("name") == "main" if isinstance(raw, dict) else False
        backups = w.mapping(c.pop("backups", None), f"{at}.backups")
        store = backups.pop("backupStore", None)
        if store is not None and not re.search(rf"/{re.escape(cluster_name)}/backups/etcd/[a-z]+$", str(store)):
            w.refuse(f"{at}.backups.backupStore", f"{store!r}: kopsy keeps etcd snapshots in its state store "
                     f"(<store>/{cluster_name}/backups/etcd/)")
        w.leftovers(backups, f"{at}.backups")
        manager = w.mapping(c.pop("manager", None), f"{at}.manager")
        interval = manager.pop("backupInterval", None)
        days = manager.pop("backupRetentionDays", None)
        if main and interval is not None:
            value = _kopsy_duration(w, interval, f"{at}.manager.backupInterval")
            if value:
                out["backupInterval"] = value
        if main and days is not None:
            if isinstance(days, int) and not isinstance(days, bool) and days > 0:
                out["backupRetention"] = {"daily": f"{days}d"}
            else:
                w.refuse(f"{at}.manager.backupRetentionDays", f"{days!r} is not a positive number of days")
        if not main and (interval is not None or days is not None):
            ignored.add("events' backup settings (kopsy has one etcd: main's apply)")
        w.leftovers(manager, f"{at}.manager")
        w.leftovers(c, at)
    w.note(f"{path}: kopsy runs etcd stacked on every control plane (kubeadm); "
           f"{', '.join(sorted(ignored)) or 'nothing else'} not applied")
    return out


def _networking(w: _Walk, net: Any, path: str) -> str | None:
    net = w.mapping(net, path)
    if len(net) != 1:
        w.refuse(path, f"name exactly one of {', '.join(NETWORKING_PROVIDERS)}")
        return None
    (provider, options), = net.items()
    if provider not in NETWORKING_PROVIDERS:
        w.refuse(f"{path}.{provider}", f"not supported (kopsy knows {', '.join(NETWORKING_PROVIDERS)})")
        return None
    opts = w.mapping(options, f"{path}.{provider}")
    if provider == "flannel":
        w.expect(opts, "backend", f"{path}.flannel", ("vxlan",), "kopsy's flannel uses vxlan")
    w.leftovers(opts, f"{path}.{provider}")
    return str(provider)


def _unwrap(doc: dict[str, Any], w: _Walk) -> tuple[dict[str, Any], dict[str, Any]]:
    """A kops document's (metadata, spec); anything else at the top level is unsupported."""
    doc = dict(doc)
    doc.pop("apiVersion", None)
    doc.pop("kind", None)
    meta = w.mapping(doc.pop("metadata", None), "metadata")
    spec = w.mapping(doc.pop("spec", None), "spec")
    w.leftovers(doc, "")
    return meta, spec


def convert_cluster(doc: dict[str, Any], w: _Walk) -> dict[str, Any]:
    meta, spec = _unwrap(doc, w)
    out_meta: dict[str, Any] = {"name": meta.pop("name", "")}
    if "creationTimestamp" in meta:
        meta.pop("creationTimestamp")
        w.note("metadata.creationTimestamp: ignored (kopsy records its own)")
    w.leftovers(meta, "metadata")

    out: dict[str, Any] = {}
    for bookkeeping in ("configBase", "channel"):
        if bookkeeping in spec:
            spec.pop(bookkeeping)
            w.note(f"spec.{bookkeeping}: ignored ({'kopsy stores the cluster where --state says' if bookkeeping == 'configBase' else 'kopsy pins its own versions'})")
    cloud = spec.pop("cloudProvider", "aws")
    if cloud != "aws":
        w.refuse("spec.cloudProvider", f"{cloud!r} is not supported (aws only)")
    version = spec.pop("kubernetesVersion", None)
    if version is not None:
        out["kubernetesVersion"] = str(version)[1:] if str(version).startswith("v") else str(version)
    for key in ("networkCIDR", "networkID", "nonMasqueradeCIDR", "podCIDR", "serviceClusterIPRange"):
        if key in spec:
            out[key] = spec.pop(key)
    for key in ("sshAccess", "kubernetesApiAccess"):
        if key in spec:
            kept = _access(w, spec.pop(key), f"spec.{key}")
            if kept is not None:
                out[key] = kept

    subnets = spec.pop("subnets", None)
    if subnets is not None:
        out["subnets"] = []
        for i, raw in enumerate(subnets if isinstance(subnets, list) else []):
            at = f"spec.subnets[{i}]"
            s = w.mapping(raw, at)
            kind = s.pop("type", "Public")
            if kind not in ("Public", "Private", "Utility"):
                w.refuse(f"{at}.type", f"{kind!r} is not supported by this kopsy (Public, Private or Utility)")
            egress = s.pop("egress", None)
            if egress is not None:
                # kops names an existing NAT gateway (nat-...) or "External"; kopsy makes its own
                w.refuse(f"{at}.egress", f"{egress!r} is not supported: kopsy creates a NAT gateway per zone's Utility subnet")
            out["subnets"].append({k: s.pop(k) for k in ("name", "zone", "cidr", "id") if k in s} | {"type": kind})
            w.leftovers(s, at)

    topology = w.mapping(spec.pop("topology", None), "spec.topology")
    placement = {w.expect(topology, key, "spec.topology", ("public", "private"), "public or private")
                 for key in ("masters", "controlPlane", "nodes")} - {None}
    if len(placement) > 1:
        w.refuse("spec.topology", "control plane and nodes in different topologies are not supported by kopsy")
    elif placement == {"private"}:
        out["topology"] = {"controlPlane": "private", "nodes": "private"}
    bastion = topology.pop("bastion", None)
    if bastion is not None:
        b = w.mapping(bastion, "spec.topology.bastion")
        if b.pop("bastionPublicName", None) is not None:
            w.note("spec.topology.bastion.bastionPublicName dropped: kopsy makes no DNS record; validate finds the bastion by its tags")
        w.leftovers(b, "spec.topology.bastion")
    dns = w.mapping(topology.pop("dns", None), "spec.topology.dns")
    w.expect(dns, "type", "spec.topology.dns", ("Public", "None"), "kopsy needs no DNS zone")
    w.leftovers(dns, "spec.topology.dns")
    w.leftovers(topology, "spec.topology")

    api = w.mapping(spec.pop("api", None), "spec.api")
    lb = w.mapping(api.pop("loadBalancer", None), "spec.api.loadBalancer")
    lb_type = w.expect(lb, "type", "spec.api.loadBalancer", ("Public",), "an internet-facing NLB only")
    lb_class = w.expect(lb, "class", "spec.api.loadBalancer", ("Network",), "a Network load balancer only")
    w.leftovers(lb, "spec.api.loadBalancer")
    w.leftovers(api, "spec.api")
    out["api"] = {"loadBalancer": {"type": lb_type or "Public", "class": lb_class or "Network"}}

    if "networking" in spec:
        provider = _networking(w, spec.pop("networking"), "spec.networking")
        if provider:
            out["networking"] = {provider: {}}
    if "cloudLabels" in spec:
        labels = w.mapping(spec.pop("cloudLabels"), "spec.cloudLabels")
        out["cloudLabels"] = {str(k): str(v) for k, v in labels.items()}
    if "rollingUpdate" in spec:  # same shape in kops and kopsy: maxSurge / maxUnavailable
        out["rollingUpdate"] = spec.pop("rollingUpdate")
    if "etcdClusters" in spec:
        etcd = _etcd(w, spec.pop("etcdClusters"), "spec.etcdClusters", str(out_meta.get("name") or ""))
        if etcd:
            out["etcd"] = etcd

    authz = w.mapping(spec.pop("authorization", None), "spec.authorization")
    if "rbac" in authz:
        authz.pop("rbac")
    w.leftovers(authz, "spec.authorization")  # alwaysAllow: kopsy always runs RBAC
    iam = w.mapping(spec.pop("iam", None), "spec.iam")
    w.expect(iam, "allowContainerRegistry", "spec.iam", (True,), "kopsy's instance roles always read ECR")
    w.expect(iam, "legacy", "spec.iam", (False,), "kopsy's roles are least privilege")
    w.leftovers(iam, "spec.iam")
    kubelet = w.mapping(spec.pop("kubelet", None), "spec.kubelet")
    w.expect(kubelet, "anonymousAuth", "spec.kubelet", (False,), "kopsy's kubelets refuse anonymous requests")
    w.leftovers(kubelet, "spec.kubelet")

    w.leftovers(spec, "spec")
    return {"apiVersion": API_VERSION, "kind": KIND_CLUSTER, "metadata": out_meta, "spec": out}


def convert_instance_group(doc: dict[str, Any], w: _Walk, cluster_name: str | None) -> dict[str, Any]:
    meta, spec = _unwrap(doc, w)
    name = meta.pop("name", "")
    if "creationTimestamp" in meta:
        meta.pop("creationTimestamp")
    labels = w.mapping(meta.pop("labels", None), "metadata.labels")
    owner = labels.pop(KOPS_CLUSTER_LABEL, None) or cluster_name or ""
    w.leftovers(labels, "metadata.labels")
    w.leftovers(meta, "metadata")

    out: dict[str, Any] = {}
    role = spec.pop("role", None)
    if role is not None:
        if role not in ROLES:
            w.refuse("spec.role", f"{role!r} is not supported by this kopsy (Master/ControlPlane, Node or Bastion)")
        out["role"] = ROLES.get(str(role), "Node")
    for key in ("machineType", "minSize", "maxSize", "subnets", "rootVolumeSize", "nodeLabels", "image",
                "additionalSecurityGroups", "rollingUpdate"):
        if key in spec:
            out[key] = spec.pop(key)
    taints = spec.pop("taints", None)
    if taints is not None:
        out["taints"] = taints
    labels_in = out.get("nodeLabels")
    if isinstance(labels_in, dict) and KOPS_IG_LABEL in labels_in:
        # kops' own bookkeeping label on every group, which its controller (not the kubelet: the
        # namespace is restricted) applies; kopsy marks a group's instances kopsy.io/instancegroup.
        out["nodeLabels"] = {k: v for k, v in labels_in.items() if k != KOPS_IG_LABEL}
        if not out["nodeLabels"]:
            del out["nodeLabels"]
        w.note(f"spec.nodeLabels.{KOPS_IG_LABEL}: dropped (kops' own label; kopsy tags the group's instances kopsy.io/instancegroup)")
    w.leftovers(spec, "spec")
    return {"apiVersion": API_VERSION, "kind": KIND_INSTANCE_GROUP,
            "metadata": {"name": name, "labels": {"kopsy.io/cluster": owner}}, "spec": out}


def convert_documents(docs: list[Any], source: str) -> Conversion:
    """Convert every kops document of ``docs`` (others pass through unchanged).

    Raises ``KopsManifestUnsupported`` listing every field path of every document that kopsy
    cannot honour; never stops at the first one."""
    result = Conversion()
    problems: list[str] = []
    cluster_name = next(
        (d.get("metadata", {}).get("name") for d in docs
         if is_kops_document(d) and d.get("kind") == KIND_CLUSTER and isinstance(d.get("metadata"), dict)),
        None,
    )
    for i, doc in enumerate(docs):
        if not is_kops_document(doc):
            result.documents.append(doc)
            continue
        kind = doc.get("kind")
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        w = _Walk(f"{source} document {i + 1} ({kind} {name}): ", problems, result.notes)
        if kind == KIND_CLUSTER:
            result.documents.append(convert_cluster(doc, w))
        elif kind == KIND_INSTANCE_GROUP:
            result.documents.append(convert_instance_group(doc, w, cluster_name))
        else:
            w.refuse("kind", f"{kind!r} documents of kops are not supported (Cluster and InstanceGroup only)")
    if problems:
        raise KopsManifestUnsupported(problems)
    return result

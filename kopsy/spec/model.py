"""The cluster specification: ``Cluster`` and ``InstanceGroup``.

Field names follow kops' ``kops.k8s.io/v1alpha2`` where the concept is the same, so a kops user
can read a kopsy spec. The documents are plain YAML (``apiVersion: kopsy.io/v1alpha1``); these
dataclasses are their typed form. Converting from a mapping rejects unknown fields with the
field path in the message; semantic checks live in ``kopsy.spec.validation``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from kopsy.errors import SpecInvalid

API_VERSION = "kopsy.io/v1alpha1"
KIND_CLUSTER = "Cluster"
KIND_INSTANCE_GROUP = "InstanceGroup"
# Where create records the SSH public key it was given; validate and the sandbox look for the
# private key beside it.
SSH_KEY_ANNOTATION = "kopsy.io/ssh-public-key-path"
# The label naming an instance group's cluster (a spec label, not an AWS tag: those are in cloud/aws/tags.py).
LABEL_CLUSTER = "kopsy.io/cluster"

ROLE_CONTROL_PLANE = "ControlPlane"
ROLE_NODE = "Node"
ROLE_BASTION = "Bastion"  # an SSH jump host in the utility subnets (private topology)
ROLES = (ROLE_CONTROL_PLANE, ROLE_NODE, ROLE_BASTION)

NETWORKING_PROVIDERS = ("calico", "cilium", "flannel", "cni")  # cni: bring your own, kopsy installs none
SUBNET_PUBLIC, SUBNET_PRIVATE, SUBNET_UTILITY = "Public", "Private", "Utility"
SUBNET_TYPES = (SUBNET_PUBLIC, SUBNET_PRIVATE, SUBNET_UTILITY)
TOPOLOGY_PUBLIC, TOPOLOGY_PRIVATE = "public", "private"
TOPOLOGIES = (TOPOLOGY_PUBLIC, TOPOLOGY_PRIVATE)
# etcd backups, as kops' etcd-manager: every 15 minutes, hourly ones kept 7 days, daily ones 90.
DEFAULT_ETCD_BACKUP_INTERVAL = "15m"
DEFAULT_ETCD_BACKUP_HOURLY = "7d"
DEFAULT_ETCD_BACKUP_DAILY = "90d"
LOAD_BALANCER_TYPES = ("Public",)


@dataclass
class Subnet:
    name: str
    zone: str
    cidr: str
    type: str = "Public"
    # Private subnets only: the Utility subnet whose NAT gateway carries this subnet's outbound
    # traffic; empty means the Utility subnet of the same zone (one NAT gateway per zone).
    egress: str = ""
    id: str = ""  # an existing subnet (kops' subnets[].id): used as it is, tagged shared, never changed

    @property
    def is_private(self) -> bool:
        return self.type == SUBNET_PRIVATE


@dataclass
class Cluster:
    name: str
    kubernetes_version: str
    subnets: list[Subnet]
    network_cidr: str = "172.20.0.0/16"
    non_masquerade_cidr: str = "100.64.0.0/10"
    pod_cidr: str = "100.96.0.0/11"
    service_cluster_ip_range: str = "100.64.0.0/13"
    ssh_access: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    kubernetes_api_access: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    api_load_balancer_type: str = "Public"
    networking: str = "calico"
    ssh_key_name: str = ""
    config_base: str = ""  # the state-store URL of this cluster, e.g. s3://bucket/prefix/NAME
    creation_timestamp: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    cloud_labels: dict[str, str] = field(default_factory=dict)  # extra tags on every resource kopsy creates
    # kops' spec.topology: "private" puts every instance group in Private subnets behind NAT
    # gateways, with the load balancers, NAT gateways and bastion in Utility subnets.
    topology: str = TOPOLOGY_PUBLIC
    # kops' networkID: an existing VPC to build in (tagged shared; kopsy never changes or deletes it)
    network_id: str = ""
    rolling_update: dict[str, str] = field(default_factory=dict)  # maxSurge / maxUnavailable, N or P%
    # spec.etcd: how often the etcd leader snapshots into the store, and how long snapshots are kept
    etcd_backup_interval: str = DEFAULT_ETCD_BACKUP_INTERVAL
    etcd_backup_hourly: str = DEFAULT_ETCD_BACKUP_HOURLY
    etcd_backup_daily: str = DEFAULT_ETCD_BACKUP_DAILY

    @property
    def zones(self) -> list[str]:
        """One entry per zone, in subnet order (a private cluster has two subnets per zone)."""
        return list(dict.fromkeys(s.zone for s in self.subnets))

    @property
    def private(self) -> bool:
        return self.topology == TOPOLOGY_PRIVATE

    def subnets_of(self, *types: str) -> list[Subnet]:
        return [s for s in self.subnets if s.type in types]

    def nat_subnet(self, s: Subnet) -> Subnet | None:
        """The Utility subnet whose NAT gateway a Private subnet routes through (None: no such subnet)."""
        if s.egress:
            return next((u for u in self.subnets if u.name == s.egress and u.type == SUBNET_UTILITY), None)
        return next((u for u in self.subnets if u.zone == s.zone and u.type == SUBNET_UTILITY), None)

    @property
    def region(self) -> str:
        return region_of_zone(self.subnets[0].zone) if self.subnets else ""

    @property
    def kubernetes_minor(self) -> str:
        """'1.33' for '1.33.2' (the package repository and kubeadm API are chosen by minor)."""
        parts = self.kubernetes_version.lstrip("v").split(".")
        return ".".join(parts[:2])


@dataclass
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass
class InstanceGroup:
    name: str
    cluster_name: str
    role: str
    machine_type: str
    min_size: int
    max_size: int
    subnets: list[str]
    image: str = ""  # empty: the current Ubuntu 24.04 LTS image, resolved at update time
    root_volume_size: int = 64
    node_labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    additional_security_groups: list[str] = field(default_factory=list)  # existing sg-... ids, not kopsy's
    rolling_update: dict[str, str] = field(default_factory=dict)  # maxSurge / maxUnavailable: beats the cluster's

    @property
    def is_control_plane(self) -> bool:
        return self.role == ROLE_CONTROL_PLANE


def region_of_zone(zone: str) -> str:
    """'us-east-1' for 'us-east-1a' (local/wavelength zones are not supported)."""
    return zone[:-1] if zone and zone[-1].isalpha() else zone


# --- (de)serialisation -----------------------------------------------------------------------


def cluster_to_dict(c: Cluster) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cloudProvider": "aws",
        "kubernetesVersion": c.kubernetes_version,
        "networkCIDR": c.network_cidr,
        "nonMasqueradeCIDR": c.non_masquerade_cidr,
        "podCIDR": c.pod_cidr,
        "serviceClusterIPRange": c.service_cluster_ip_range,
        "subnets": [{"name": s.name, "zone": s.zone, "cidr": s.cidr, "type": s.type} | ({"egress": s.egress} if s.egress else {})
                    | ({"id": s.id} if s.id else {}) for s in c.subnets],
        "sshAccess": list(c.ssh_access),
        "kubernetesApiAccess": list(c.kubernetes_api_access),
        "api": {"loadBalancer": {"type": c.api_load_balancer_type, "class": "Network"}},
        "networking": {c.networking: {}},
    }
    if c.network_id:
        spec["networkID"] = c.network_id
    if c.topology != TOPOLOGY_PUBLIC:  # left out when public, so public specs read as before
        spec["topology"] = {"controlPlane": c.topology, "nodes": c.topology}
    if c.cloud_labels:
        spec["cloudLabels"] = dict(c.cloud_labels)
    if c.rolling_update:
        spec["rollingUpdate"] = dict(c.rolling_update)
    etcd = _etcd_to_dict(c)
    if etcd:
        spec["etcd"] = etcd
    if c.ssh_key_name:
        spec["sshKeyName"] = c.ssh_key_name
    if c.config_base:
        spec["configBase"] = c.config_base
    metadata: dict[str, Any] = {"name": c.name}
    if c.creation_timestamp:
        metadata["creationTimestamp"] = c.creation_timestamp
    if c.annotations:
        metadata["annotations"] = dict(c.annotations)
    return {"apiVersion": API_VERSION, "kind": KIND_CLUSTER, "metadata": metadata, "spec": spec}


def _etcd_to_dict(c: Cluster) -> dict[str, Any]:
    """spec.etcd, only the settings that differ from the defaults (older specs stay as they were)."""
    out: dict[str, Any] = {}
    if c.etcd_backup_interval != DEFAULT_ETCD_BACKUP_INTERVAL:
        out["backupInterval"] = c.etcd_backup_interval
    retention = {k: v for k, v, d in (("hourly", c.etcd_backup_hourly, DEFAULT_ETCD_BACKUP_HOURLY),
                                      ("daily", c.etcd_backup_daily, DEFAULT_ETCD_BACKUP_DAILY)) if v != d}
    if retention:
        out["backupRetention"] = retention
    return out


def instance_group_to_dict(ig: InstanceGroup) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "role": ig.role,
        "machineType": ig.machine_type,
        "minSize": ig.min_size,
        "maxSize": ig.max_size,
        "subnets": list(ig.subnets),
        "rootVolumeSize": ig.root_volume_size,
    }
    if ig.image:
        spec["image"] = ig.image
    if ig.node_labels:
        spec["nodeLabels"] = dict(ig.node_labels)
    if ig.taints:
        spec["taints"] = [str(t) for t in ig.taints]
    if ig.additional_security_groups:
        spec["additionalSecurityGroups"] = list(ig.additional_security_groups)
    if ig.rolling_update:
        spec["rollingUpdate"] = dict(ig.rolling_update)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_INSTANCE_GROUP,
        "metadata": {"name": ig.name, "labels": {LABEL_CLUSTER: ig.cluster_name}},
        "spec": spec,
    }


class _Reader:
    """Reads a mapping field by field, collecting problems with their paths."""

    def __init__(self, data: Any, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        if not isinstance(data, dict):
            problems.append(f"{path}: must be a mapping, got {_typename(data)}")
            data = {}
        self.data: dict[str, Any] = data
        self.seen: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, required: bool = False) -> Any:
        self.seen.add(key)
        where = f"{self.path}.{key}" if self.path else key
        if key not in self.data or self.data[key] is None:
            if required:
                self.problems.append(f"{where}: required")
            return default
        value = self.data[key]
        if kind is int and isinstance(value, bool):
            self.problems.append(f"{where}: must be an integer, got a boolean")
            return default
        if not isinstance(value, kind):
            want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.problems.append(f"{where}: must be {_article(want)}, got {_typename(value)}")
            return default
        return value

    def sub(self, key: str) -> _Reader:
        self.seen.add(key)
        where = f"{self.path}.{key}" if self.path else key
        return _Reader(self.data.get(key) or {}, where, self.problems)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.seen:
                where = f"{self.path}.{key}" if self.path else key
                self.problems.append(f"{where}: unknown field")


def _typename(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", bool: "a boolean",
            float: "a number", type(None): "nothing"}.get(type(v), type(v).__name__)


def _article(name: str) -> str:
    return {"str": "a string", "int": "an integer", "list": "a list", "dict": "a mapping", "bool": "a boolean"}.get(
        name, name
    )


def _str_map(r: _Reader, key: str) -> dict[str, str]:
    values = r.get(key, dict, {})
    out = {}
    for k, v in values.items():
        if not isinstance(k, str) or not isinstance(v, str):
            r.problems.append(f"{r.path}.{key}.{k}: keys and values must be strings")
        else:
            out[k] = v
    return out


def _str_list(r: _Reader, key: str, default: list[str] | None = None) -> list[str]:
    values = r.get(key, list, default if default is not None else [])
    out = []
    for i, v in enumerate(values):
        if not isinstance(v, str):
            r.problems.append(f"{r.path}.{key}[{i}]: must be a string, got {_typename(v)}")
        else:
            out.append(v)
    return out


def _header(doc: Any, kind: str, problems: list[str]) -> tuple[_Reader, _Reader, _Reader]:
    top = _Reader(doc, "", problems)
    api = top.get("apiVersion", str, required=True)
    if api is not None and api != API_VERSION:
        problems.append(f"apiVersion: {api!r} is not supported by this kopsy (expected {API_VERSION}); upgrade kopsy")
    k = top.get("kind", str, required=True)
    if k is not None and k != kind:
        problems.append(f"kind: expected {kind}, got {k!r}")
    meta = top.sub("metadata")
    spec = top.sub("spec")
    top.finish()
    return top, meta, spec


def cluster_from_dict(doc: Any) -> Cluster:
    """Parse a Cluster document; raises ``SpecInvalid`` listing every structural problem."""
    problems: list[str] = []
    _, meta, spec = _header(doc, KIND_CLUSTER, problems)
    name = meta.get("name", str, "", required=True)
    created = meta.get("creationTimestamp", str, "")
    meta.get("labels", dict, {})
    annotations = meta.get("annotations", dict, {})
    for k, v in annotations.items():
        if not isinstance(k, str) or isinstance(v, (dict, list)) or v is None:
            problems.append(f"metadata.annotations.{str(k)[:60]}: values must be strings, not {type(v).__name__}")
    meta.finish()

    cloud = spec.get("cloudProvider", str, "aws")
    if cloud != "aws":
        problems.append(f"spec.cloudProvider: only 'aws' is supported, got {cloud!r}")
    subnets: list[Subnet] = []
    for i, raw in enumerate(spec.get("subnets", list, [], required=True)):
        sr = _Reader(raw, f"spec.subnets[{i}]", problems)
        subnets.append(
            Subnet(
                name=sr.get("name", str, "", required=True),
                zone=sr.get("zone", str, "", required=True),
                cidr=sr.get("cidr", str, "", required=True),
                type=sr.get("type", str, "Public"),
                egress=sr.get("egress", str, ""),
                id=sr.get("id", str, ""),
            )
        )
        sr.finish()
    topo = spec.sub("topology")
    cp_topology = topo.get("controlPlane", str, TOPOLOGY_PUBLIC)
    node_topology = topo.get("nodes", str, cp_topology)
    topo.finish()
    if cp_topology != node_topology:
        problems.append(f"spec.topology: controlPlane ({cp_topology}) and nodes ({node_topology}) must be the same; kopsy has no mixed topology")
    api = spec.sub("api")
    lb = api.sub("loadBalancer")
    lb_type = lb.get("type", str, "Public")
    lb_class = lb.get("class", str, "Network")
    if lb_class != "Network":
        problems.append(f"spec.api.loadBalancer.class: only 'Network' is supported, got {lb_class!r}")
    lb.finish()
    api.finish()
    net = spec.get("networking", (dict, str), {"calico": {}})
    if isinstance(net, str):
        networking = net
    elif len(net) != 1:
        problems.append(f"spec.networking: name exactly one of {', '.join(NETWORKING_PROVIDERS)}, got {sorted(net)}")
        networking = "calico"
    else:
        networking = next(iter(net))
    etcd = spec.sub("etcd")
    interval = etcd.get("backupInterval", str, DEFAULT_ETCD_BACKUP_INTERVAL)
    retention = etcd.sub("backupRetention")
    hourly = retention.get("hourly", str, DEFAULT_ETCD_BACKUP_HOURLY)
    daily = retention.get("daily", str, DEFAULT_ETCD_BACKUP_DAILY)
    retention.finish()
    etcd.finish()
    c = Cluster(
        name=name,
        kubernetes_version=str(spec.get("kubernetesVersion", (str, int, float), "", required=True) or ""),
        subnets=subnets,
        network_cidr=spec.get("networkCIDR", str, "172.20.0.0/16"),
        non_masquerade_cidr=spec.get("nonMasqueradeCIDR", str, "100.64.0.0/10"),
        pod_cidr=spec.get("podCIDR", str, "100.96.0.0/11"),
        service_cluster_ip_range=spec.get("serviceClusterIPRange", str, "100.64.0.0/13"),
        ssh_access=_str_list(spec, "sshAccess", ["0.0.0.0/0"]),
        kubernetes_api_access=_str_list(spec, "kubernetesApiAccess", ["0.0.0.0/0"]),
        api_load_balancer_type=lb_type,
        networking=networking,
        ssh_key_name=spec.get("sshKeyName", str, ""),
        cloud_labels=_str_map(spec, "cloudLabels"),
        config_base=spec.get("configBase", str, ""),
        creation_timestamp=created,
        annotations={str(k): str(v) for k, v in annotations.items()},
        topology=cp_topology,
        network_id=spec.get("networkID", str, ""),
        rolling_update=_rolling_update(spec, problems),
        etcd_backup_interval=interval,
        etcd_backup_hourly=hourly,
        etcd_backup_daily=daily,
    )
    spec.finish()
    if problems:
        raise SpecInvalid(problems)
    return c


def instance_group_from_dict(doc: Any, cluster_name: str | None = None) -> InstanceGroup:
    """Parse an InstanceGroup document; raises ``SpecInvalid`` listing every structural problem."""
    problems: list[str] = []
    _, meta, spec = _header(doc, KIND_INSTANCE_GROUP, problems)
    name = meta.get("name", str, "", required=True)
    labels = meta.get("labels", dict, {})
    meta.get("creationTimestamp", str, "")
    meta.finish()
    owner = labels.get(LABEL_CLUSTER) or cluster_name or ""
    if not owner:
        problems.append("metadata.labels.kopsy.io/cluster: required (the cluster this group belongs to)")
    taints: list[Taint] = []
    for i, raw in enumerate(_str_list(spec, "taints", [])):
        t = parse_taint(raw)
        if t is None:
            problems.append(f"spec.taints[{i}]: {raw!r} is not key[=value]:Effect")
        else:
            taints.append(t)
    node_labels = spec.get("nodeLabels", dict, {})
    for k, v in node_labels.items():
        if not isinstance(k, str) or not isinstance(v, str):
            problems.append(f"spec.nodeLabels.{k}: keys and values must be strings")
    ig = InstanceGroup(
        name=name,
        cluster_name=owner,
        role=spec.get("role", str, "", required=True),
        machine_type=spec.get("machineType", str, "", required=True),
        min_size=spec.get("minSize", int, 0, required=True),
        max_size=spec.get("maxSize", int, 0, required=True),
        subnets=_str_list(spec, "subnets", []),
        image=spec.get("image", str, ""),
        root_volume_size=spec.get("rootVolumeSize", int, 64),
        node_labels={str(k): str(v) for k, v in node_labels.items()},
        additional_security_groups=_str_list(spec, "additionalSecurityGroups", []),
        taints=taints,
        rolling_update=_rolling_update(spec, problems),
    )
    spec.finish()
    if problems:
        raise SpecInvalid(problems)
    return ig


ROLLING_UPDATE_FIELDS = ("maxSurge", "maxUnavailable")
_INT_OR_PERCENT = re.compile(r"^(\d{1,6})(%?)$")


def int_or_percent_problem(value: Any) -> str | None:
    """Why ``value`` is not kops' IntOrString for maxSurge/maxUnavailable (``2`` or ``25%``), or None."""
    m = _INT_OR_PERCENT.fullmatch(str(value).strip()) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    if m is None or (m.group(2) and int(m.group(1)) > 100):
        return f"{str(value)[:20]!r} is not a whole number of instances (2) or a percentage 0-100% (25%)"
    return None


def _rolling_update(spec: _Reader, problems: list[str]) -> dict[str, str]:
    """``spec.rollingUpdate``: maxSurge / maxUnavailable as kops writes them (an int or "P%")."""
    raw = spec.sub("rollingUpdate")
    out = {}
    for key in ROLLING_UPDATE_FIELDS:
        value = raw.get(key, (int, str), None)
        if value is None:
            continue
        problem = int_or_percent_problem(value)
        if problem:
            problems.append(f"{raw.path}.{key}: {problem}")
        else:
            out[key] = str(value).strip()
    raw.finish()
    return out


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def parse_taint(text: str) -> Taint | None:
    if ":" not in text:
        return None
    kv, effect = text.rsplit(":", 1)
    if effect not in TAINT_EFFECTS or not kv:
        return None
    key, _, value = kv.partition("=")
    return Taint(key=key, value=value, effect=effect) if key else None


def replace(obj: Any, **changes: Any) -> Any:
    """dataclasses.replace, re-exported so callers need not import dataclasses."""
    return dataclasses.replace(obj, **changes)

"""Semantic validation of a cluster and its instance groups.

Every problem is reported with its field path (``spec.subnets[1].cidr: ...``) so a user can find
it in the YAML; ``validate_cluster`` collects all of them before raising, so one run shows
everything to fix. Invalid input never reaches the state store because every writer calls this.
"""

from __future__ import annotations

import ipaddress
import re

from kopsy.errors import SpecInvalid
from kopsy.spec.model import (
    LOAD_BALANCER_TYPES,
    NETWORKING_PROVIDERS,
    ROLE_BASTION,
    ROLE_CONTROL_PLANE,
    ROLES,
    SUBNET_PRIVATE,
    SUBNET_PUBLIC,
    SUBNET_TYPES,
    SUBNET_UTILITY,
    TOPOLOGIES,
    Cluster,
    InstanceGroup,
    Subnet,
    region_of_zone,
)
from kopsy.spec.versions import version_problem

# IAM role names are at most 64 characters and kopsy names roles "control-plane.<cluster>".
MAX_CLUSTER_NAME = 50
CONTROL_PLANE_COUNTS = (1, 3, 5)
MAX_GROUP_SIZE = 1000
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ZONE = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+[a-z]$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
_AMI = re.compile(r"^ami-[0-9a-f]{8}([0-9a-f]{9})?$")
_SG = re.compile(r"^sg-[0-9a-f]{8}([0-9a-f]{9})?$")
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{8}([0-9a-f]{9})?$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8}([0-9a-f]{9})?$")
_OWNER_NAME = re.compile(r"^(\d{12}|amazon|aws-marketplace|self)/[^\s]+$")  # looked up by name at update
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
# The kubelet registers only these labels of the kubernetes.io / k8s.io namespaces itself
# (--node-labels refuses the rest, node-role.kubernetes.io/* included, and the node never joins).
_KUBELET_LABEL_PREFIXES = ("kubelet.kubernetes.io/", "node.kubernetes.io/")
_KUBELET_LABELS = {
    "kubernetes.io/hostname", "kubernetes.io/instance-type", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/instance-type", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
}


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a usable cluster name (a DNS-1123 subdomain), or None."""
    if not name:
        return "required"
    if len(name) > MAX_CLUSTER_NAME:
        return f"{name!r} is longer than {MAX_CLUSTER_NAME} characters (IAM role names derive from it)"
    if any(not _DNS_LABEL.match(label) for label in name.split(".")):
        return (
            f"{name!r} is not a valid DNS-1123 name: use lowercase letters, digits, '-' and '.', "
            f"starting and ending with a letter or digit (e.g. demo.example.com)"
        )
    return None


def _network(text: str, path: str, problems: list[str]) -> ipaddress.IPv4Network | None:
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "host bits" in str(exc):
            fixed = ipaddress.ip_network(text, strict=False)
            problems.append(f"{path}: {text!r} has host bits set; did you mean {fixed}?")
        else:
            problems.append(f"{path}: {str(text)[:60]!r} is not a CIDR like 172.20.0.0/16")
        return None
    if not isinstance(net, ipaddress.IPv4Network):
        problems.append(f"{path}: {text!r} is IPv6; kopsy supports IPv4 networks only")
        return None
    return net


# Ranges no VPC or subnet may use: AWS allows RFC 1918 and publicly routable blocks (plus
# 100.64.0.0/10), never these.
RESERVED_NETWORKS = tuple(ipaddress.IPv4Network(n) for n in (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
    "192.0.0.0/24", "198.18.0.0/15",
))


def _reserved(net: ipaddress.IPv4Network, path: str, problems: list[str]) -> None:
    for r in RESERVED_NETWORKS:
        if net.overlaps(r):
            what = {"127.0.0.0/8": "loopback", "169.254.0.0/16": "link-local", "224.0.0.0/4": "multicast"}.get(str(r), "reserved")
            problems.append(f"{path}: {net} overlaps the {what} range {r}; use a private range such as 172.20.0.0/16 or 10.0.0.0/16")
            return


def _access_list(values: list[str], path: str, problems: list[str]) -> None:
    if not values:
        problems.append(f"{path}: at least one CIDR is required (use 0.0.0.0/0 for everywhere)")
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            problems.append(f"{path}[{i}]: an empty CIDR; give one like 203.0.113.0/24 (0.0.0.0/0 for everywhere)")
            continue
        try:
            net = ipaddress.ip_network(v, strict=True)
            if not isinstance(net, ipaddress.IPv4Network):
                problems.append(f"{path}[{i}]: {v!r} is IPv6; kopsy's security-group rules are IPv4 only: give IPv4 CIDRs")
        except ValueError as exc:
            if "host bits" in str(exc):
                network = ipaddress.ip_network(v, strict=False)
                problems.append(f"{path}[{i}]: {v!r} has host bits set; did you mean {network} (or {v.split('/')[0]}/32)?")
            else:
                problems.append(f"{path}[{i}]: {v!r} is not a CIDR like 203.0.113.0/24")


_DURATION = re.compile(r"^(\d{1,6})([mhd])$")
_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400}
MIN_BACKUP_INTERVAL = 60  # etcd snapshots of a busy cluster take seconds; one a minute at most
MAX_BACKUP_INTERVAL = 86400  # daily retention needs at least one snapshot a day


def duration_seconds(text: str) -> int | None:
    """'15m' -> 900; None unless it is one number and one unit of m, h or d (as systemd reads it)."""
    m = _DURATION.match(text)
    return int(m.group(1)) * _DURATION_UNITS[m.group(2)] if m else None


def etcd_problems(c: Cluster) -> list[str]:
    """spec.etcd: a snapshot interval between a minute and a day; retention windows no shorter than it."""
    problems: list[str] = []
    interval = duration_seconds(c.etcd_backup_interval)
    if interval is None or not MIN_BACKUP_INTERVAL <= interval <= MAX_BACKUP_INTERVAL:
        problems.append(f"spec.etcd.backupInterval: {c.etcd_backup_interval!r} must be a duration like 15m, 1h "
                        f"(minutes, hours or days, between 1m and 1d)")
    hourly = duration_seconds(c.etcd_backup_hourly)
    daily = duration_seconds(c.etcd_backup_daily)
    for key, text, value in (("hourly", c.etcd_backup_hourly, hourly), ("daily", c.etcd_backup_daily, daily)):
        if value is None:
            problems.append(f"spec.etcd.backupRetention.{key}: {text!r} must be a duration like 7d or 90d")
        elif interval is not None and value < interval:
            problems.append(f"spec.etcd.backupRetention.{key}: {text} is shorter than the backup interval "
                            f"{c.etcd_backup_interval}: no snapshot would be kept")
    if hourly is not None and daily is not None and daily < hourly:
        problems.append(f"spec.etcd.backupRetention.daily: {c.etcd_backup_daily} is shorter than hourly "
                        f"{c.etcd_backup_hourly}")
    return problems


def cluster_problems(c: Cluster) -> list[str]:
    problems: list[str] = []
    p = name_problem(c.name)
    if p:
        problems.append(f"metadata.name: {p}")
    v = version_problem(c.kubernetes_version)
    if v:
        problems.append(f"spec.kubernetesVersion: {v}")
    if c.networking not in NETWORKING_PROVIDERS:
        problems.append(f"spec.networking: {c.networking!r} is not one of {', '.join(NETWORKING_PROVIDERS)}")
    if c.api_load_balancer_type not in LOAD_BALANCER_TYPES:
        problems.append(f"spec.api.loadBalancer.type: only {', '.join(LOAD_BALANCER_TYPES)} is supported")
    problems.extend(etcd_problems(c))

    vpc = _network(c.network_cidr, "spec.networkCIDR", problems)
    if vpc is not None and not 16 <= vpc.prefixlen <= 28:
        problems.append(f"spec.networkCIDR: {c.network_cidr} must have a prefix between /16 and /28 (an AWS VPC limit)")
    if vpc is not None:
        _reserved(vpc, "spec.networkCIDR", problems)
    nonmasq = _network(c.non_masquerade_cidr, "spec.nonMasqueradeCIDR", problems)
    pods = _network(c.pod_cidr, "spec.podCIDR", problems)
    services = _network(c.service_cluster_ip_range, "spec.serviceClusterIPRange", problems)
    if pods and services and pods.overlaps(services):
        problems.append(f"spec.podCIDR: {pods} overlaps spec.serviceClusterIPRange {services}")
    for label, net in (("spec.podCIDR", pods), ("spec.serviceClusterIPRange", services)):
        if net and nonmasq and not net.subnet_of(nonmasq):
            problems.append(f"{label}: {net} is not inside spec.nonMasqueradeCIDR {nonmasq}")
        if net and vpc and net.overlaps(vpc):
            problems.append(f"{label}: {net} overlaps spec.networkCIDR {vpc}")
    if nonmasq and vpc and nonmasq.overlaps(vpc):
        problems.append(f"spec.nonMasqueradeCIDR: {nonmasq} overlaps spec.networkCIDR {vpc}")

    if not c.subnets:
        problems.append("spec.subnets: at least one subnet (one zone) is required")
    regions: dict[str, str] = {}
    seen_names: set[str] = set()
    carved: list[tuple[str, ipaddress.IPv4Network]] = []
    for i, s in enumerate(c.subnets):
        path = f"spec.subnets[{i}]"
        if not s.name or not _DNS_LABEL.match(s.name):
            problems.append(f"{path}.name: {s.name!r} must be a DNS-1123 label")
        elif s.name in seen_names:
            problems.append(f"{path}.name: {s.name!r} is used by another subnet")
        seen_names.add(s.name)
        if not _ZONE.match(s.zone):
            problems.append(f"{path}.zone: {s.zone!r} is not an AWS availability zone like us-east-1a")
        else:
            regions.setdefault(region_of_zone(s.zone), s.zone)
        if s.type not in SUBNET_TYPES:
            problems.append(f"{path}.type: {s.type!r} is not one of {', '.join(SUBNET_TYPES)}")
        problems.extend(_subnet_topology_problems(c, s, path))
        net = _network(s.cidr, f"{path}.cidr", problems)
        if net is None:
            continue
        if vpc is not None and not net.subnet_of(vpc):
            problems.append(f"{path}.cidr: {net} is not inside spec.networkCIDR {vpc}")
        if not 16 <= net.prefixlen <= 28:
            problems.append(f"{path}.cidr: {net} must have a prefix between /16 and /28")
        if vpc is None:
            _reserved(net, f"{path}.cidr", problems)
        for other_name, other in carved:
            if net.overlaps(other):
                problems.append(f"{path}.cidr: {net} overlaps subnet {other_name} ({other})")
        carved.append((s.name, net))
    if len(regions) > 1:
        listing = ", ".join(f"{zone} ({region})" for region, zone in regions.items())
        problems.append(f"spec.subnets: all zones must be in one region, got {listing}")

    if c.topology not in TOPOLOGIES:
        problems.append(f"spec.topology: {c.topology!r} is not one of {', '.join(TOPOLOGIES)}")
    if c.network_id and not _VPC_ID.match(c.network_id):
        problems.append(f"spec.networkID: {c.network_id!r} is not a VPC id like vpc-0123456789abcdef0")
    for i, s in enumerate(c.subnets):
        if s.id and not _SUBNET_ID.match(s.id):
            problems.append(f"spec.subnets[{i}].id: {s.id!r} is not a subnet id like subnet-0123456789abcdef0")
        elif s.id and not c.network_id:
            problems.append(f"spec.subnets[{i}].id: an existing subnet needs spec.networkID (the VPC it is in)")
    _access_list(c.ssh_access, "spec.sshAccess", problems)
    _access_list(c.kubernetes_api_access, "spec.kubernetesApiAccess", problems)
    problems.extend(cloud_label_problems(c.cloud_labels))
    return problems


def _subnet_topology_problems(c: Cluster, s: Subnet, path: str) -> list[str]:
    """A subnet's type must fit the topology: a public cluster has Public subnets only; a private
    one has Private subnets for its instances, each with a Utility subnet for its NAT gateway."""
    if c.topology not in TOPOLOGIES:
        return []  # reported once, as spec.topology
    if c.topology != "private":
        if s.type != SUBNET_PUBLIC:
            return [f"{path}.type: {s.type} subnets need spec.topology private (kopsy create cluster --topology private)"]
        return [f"{path}.egress: only a Private subnet has an egress"] if s.egress else []
    if s.type == SUBNET_PUBLIC:
        return [f"{path}.type: a private topology has Private and Utility subnets, not Public"]
    if s.type == SUBNET_UTILITY:
        return [f"{path}.egress: only a Private subnet has an egress"] if s.egress else []
    if s.type == SUBNET_PRIVATE and c.nat_subnet(s) is None:
        if s.egress:
            return [f"{path}.egress: {s.egress!r} is not a Utility subnet of the cluster (its NAT gateway carries this subnet's traffic)"]
        return [f"{path}: Private subnet {s.name!r} has no Utility subnet in zone {s.zone} for its NAT gateway; add one or set egress"]
    return []


# Tags kopsy sets itself (delete finds resources by them): a cloud label may not shadow one.
_RESERVED_TAG_PREFIXES = ("aws:", "kubernetes.io/cluster/", "kopsy.io/", "k8s.io/role/")
_RESERVED_TAGS = ("Name", "KubernetesCluster")
MAX_CLOUD_LABELS = 30  # AWS allows 50 tags per resource; kopsy's own take up to 8


def cloud_label_problems(labels: dict[str, str]) -> list[str]:
    problems = []
    if len(labels) > MAX_CLOUD_LABELS:
        problems.append(f"spec.cloudLabels: {len(labels)} labels; at most {MAX_CLOUD_LABELS} (AWS allows 50 tags per resource)")
    for k, v in labels.items():
        at = f"spec.cloudLabels.{k}"
        if not k or len(k) > 128:
            problems.append(f"{at}: a tag key must have 1 to 128 characters")
        elif k in _RESERVED_TAGS or k.startswith(_RESERVED_TAG_PREFIXES):
            problems.append(f"{at}: {k!r} is a tag kopsy sets itself (or AWS reserves); choose another key")
        if len(v) > 256:
            problems.append(f"{at}: a tag value must have at most 256 characters")
    return problems


def instance_group_problems(ig: InstanceGroup, cluster: Cluster, where: str = "") -> list[str]:
    at = where or f"instancegroup {ig.name!r}"
    problems: list[str] = []
    if not _DNS_LABEL.match(ig.name or ""):
        problems.append(f"{at}: metadata.name: {ig.name!r} must be a DNS-1123 label (lowercase, digits, '-')")
    if ig.cluster_name != cluster.name:
        problems.append(f"{at}: belongs to cluster {ig.cluster_name!r}, not {cluster.name!r}")
    if ig.role not in ROLES:
        problems.append(f"{at}: spec.role: {ig.role!r} must be one of {', '.join(ROLES)}")
    if not _MACHINE_TYPE.match(ig.machine_type or ""):
        problems.append(f"{at}: spec.machineType: {ig.machine_type!r} is not an EC2 instance type like t3.medium")
    if ig.image and not _AMI.match(ig.image) and not _OWNER_NAME.match(ig.image):
        problems.append(f"{at}: spec.image: {ig.image!r} is not an AMI id like ami-0123456789abcdef0 "
                        f"or an OWNER/NAME image (as kops writes them: 099720109477/ubuntu/images/...)")
    if ig.min_size < 0:
        problems.append(f"{at}: spec.minSize: must be >= 0, got {ig.min_size}")
    if ig.max_size < ig.min_size:
        problems.append(f"{at}: spec.maxSize: {ig.max_size} is smaller than spec.minSize {ig.min_size}")
    if ig.max_size > MAX_GROUP_SIZE:
        problems.append(f"{at}: spec.maxSize: {ig.max_size} is more than {MAX_GROUP_SIZE}")
    for i, group in enumerate(ig.additional_security_groups):
        if not _SG.match(group):
            problems.append(f"{at}: spec.additionalSecurityGroups[{i}]: {group!r} is not a security group id like sg-0123456789abcdef0")
    if not 8 <= ig.root_volume_size <= 16384:
        problems.append(f"{at}: spec.rootVolumeSize: {ig.root_volume_size} GiB must be between 8 and 16384")
    known = {s.name for s in cluster.subnets}
    if not ig.subnets:
        problems.append(f"{at}: spec.subnets: at least one subnet is required")
    types = {s.name: s.type for s in cluster.subnets}
    # Bastions live in the public (Utility) subnets, everything else in the Private ones.
    allowed = ((SUBNET_UTILITY,) if ig.role == ROLE_BASTION else (SUBNET_PRIVATE,)) if cluster.private else (SUBNET_PUBLIC,)
    for i, name in enumerate(ig.subnets):
        if name not in known:
            problems.append(f"{at}: spec.subnets[{i}]: {name!r} is not a subnet of the cluster ({', '.join(sorted(known))})")
        elif types[name] not in allowed:
            problems.append(f"{at}: spec.subnets[{i}]: {name!r} is a {types[name]} subnet; a {ig.role} group of a "
                            f"{cluster.topology} cluster goes in {' or '.join(allowed)} subnets")
    if ig.role == ROLE_BASTION and (ig.node_labels or ig.taints):
        problems.append(f"{at}: a Bastion is no Kubernetes node: spec.nodeLabels and spec.taints would never apply; remove them")
    if ig.role == ROLE_BASTION and not cluster.private:
        problems.append(f"{at}: spec.role: a Bastion needs spec.topology private (in a public cluster every instance has a public IP)")
    if ig.role == ROLE_CONTROL_PLANE:
        if (ig.min_size, ig.max_size) != (1, 1):
            problems.append(f"{at}: a control-plane group has minSize = maxSize = 1 (one per zone)")
        if len(ig.subnets) != 1:
            problems.append(f"{at}: spec.subnets: a control-plane group lives in exactly one subnet")
    for key, value in ig.node_labels.items():
        if not _LABEL_KEY.match(key) or len(key) > 253 + 1 + 63:
            problems.append(f"{at}: spec.nodeLabels: {key!r} is not a valid label key")
        elif _reserved_label(key):
            problems.append(f"{at}: spec.nodeLabels: {key!r} is in a namespace the kubelet may not set "
                            f"(kubernetes.io, k8s.io); use your own prefix, e.g. example.com/{key.rpartition('/')[2]}")
        if not _LABEL_VALUE.match(value):
            problems.append(f"{at}: spec.nodeLabels.{key}: {value!r} is not a valid label value "
                            f"(at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)")
    for i, t in enumerate(ig.taints):
        if not _LABEL_KEY.match(t.key):
            problems.append(f"{at}: spec.taints[{i}]: {t.key!r} is not a valid taint key")
        if not _LABEL_VALUE.match(t.value):
            problems.append(f"{at}: spec.taints[{i}]: {t.value!r} is not a valid taint value")
    if len({(t.key, t.effect) for t in ig.taints}) != len(ig.taints):
        problems.append(f"{at}: spec.taints: a key is given twice with the same effect")
    return problems


def _reserved_label(key: str) -> bool:
    prefix = key.rpartition("/")[0]
    if not prefix or key in _KUBELET_LABELS or key.startswith(_KUBELET_LABEL_PREFIXES):
        return False
    return prefix in ("kubernetes.io", "k8s.io") or prefix.endswith((".kubernetes.io", ".k8s.io"))


def validate_cluster(cluster: Cluster, groups: list[InstanceGroup]) -> None:
    """Raise ``SpecInvalid`` with every problem of the cluster and its groups taken together."""
    problems = cluster_problems(cluster)
    names: set[str] = set()
    for ig in groups:
        if ig.name in names:
            problems.append(f"instancegroup {ig.name!r}: defined twice")
        names.add(ig.name)
        problems.extend(instance_group_problems(ig, cluster))
    control_planes = sum(1 for ig in groups if ig.role == ROLE_CONTROL_PLANE)
    if groups and control_planes not in CONTROL_PLANE_COUNTS:
        problems.append(
            f"instance groups: {control_planes} control-plane group(s); etcd needs 1, 3 or 5 control-plane instances"
        )
    if problems:
        raise SpecInvalid(problems)

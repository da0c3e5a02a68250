"""A complete cluster from the few flags of ``kopsy create cluster``.

The defaults are what a kops user expects: a /16 VPC with one subnet per zone carved from it,
one control-plane group per control-plane zone, one ``nodes`` group across all zones, Calico,
and SSH/API access from anywhere (the CLI warns about that).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from kopsy.errors import SpecInvalid
from kopsy.spec.model import (
    ROLE_BASTION,
    ROLE_CONTROL_PLANE,
    ROLE_NODE,
    SUBNET_PRIVATE,
    SUBNET_PUBLIC,
    SUBNET_UTILITY,
    TOPOLOGY_PRIVATE,
    TOPOLOGY_PUBLIC,
    Cluster,
    InstanceGroup,
    Subnet,
)
from kopsy.spec.validation import CONTROL_PLANE_COUNTS, MAX_GROUP_SIZE
from kopsy.spec.versions import DEFAULT_KUBERNETES_VERSION

DEFAULT_NETWORK_CIDR = "172.20.0.0/16"
DEFAULT_MACHINE_TYPE = "t3.medium"
BASTION_MACHINE_TYPE = "t3.micro"  # kops' default bastion size
BASTION_ROOT_VOLUME = 32
NAT_PER_ZONE, NAT_SINGLE = "per-zone", "single"
NAT_MODES = (NAT_PER_ZONE, NAT_SINGLE)
CONTROL_PLANE_ROOT_VOLUME = 64
NODE_ROOT_VOLUME = 128


@dataclass
class CreateOptions:
    name: str
    zones: list[str]
    control_plane_zones: list[str] = field(default_factory=list)
    control_plane_count: int = 1
    control_plane_size: str = DEFAULT_MACHINE_TYPE
    node_count: int = 2
    node_size: str = DEFAULT_MACHINE_TYPE
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION
    network_cidr: str = DEFAULT_NETWORK_CIDR
    networking: str = "calico"
    image: str = ""
    ssh_access: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    api_access: list[str] = field(default_factory=lambda: ["0.0.0.0/0"])
    topology: str = TOPOLOGY_PUBLIC
    nat: str = NAT_PER_ZONE  # private topology: a NAT gateway per zone, or one for all zones
    bastion: bool = False
    # An existing VPC (network_cidr is then its CIDR): the subnets the user named, by zone, as
    # (id, cidr) -- the instances' ones and the utility ones -- and the CIDRs already taken in it.
    network_id: str = ""
    subnet_ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    utility_subnet_ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    taken_cidrs: list[str] = field(default_factory=list)


def _short(n: int) -> str:
    text = str(n)
    return text if len(text) <= 12 else f"{text[:12]}... ({len(text)} digits)"


def carve_subnets(network_cidr: str, count: int) -> list[str]:
    """One CIDR per zone, like kops: /19s out of a /16 (smaller when there are many zones), skipping the first block."""
    try:
        vpc = ipaddress.ip_network(network_cidr, strict=True)
    except ValueError as exc:
        if "host bits" in str(exc):
            fixed = ipaddress.ip_network(network_cidr, strict=False)
            raise SpecInvalid([f"--network-cidr: {network_cidr!r} has host bits set; did you mean {fixed}?"]) from None
        raise SpecInvalid([f"--network-cidr: {network_cidr[:60]!r} is not a CIDR like 172.20.0.0/16"]) from None
    if not isinstance(vpc, ipaddress.IPv4Network):
        raise SpecInvalid([f"--network-cidr: {network_cidr} is IPv6; kopsy supports IPv4 networks only"])
    extra_bits = 3 if count <= 7 else 4 if count <= 15 else 5
    if vpc.prefixlen + extra_bits > 28:
        raise SpecInvalid([f"--network-cidr: {network_cidr} is too small for {count} zone subnets"])
    blocks = list(vpc.subnets(prefixlen_diff=extra_bits))[1:]
    return [str(b) for b in blocks[:count]]


def utility_cidrs(network_cidr: str, count: int) -> list[str]:
    """Utility subnets out of the first block, which ``carve_subnets`` leaves free: /22s of a
    /16 as kops carves them (each 1/8 of the zone subnets' size)."""
    vpc = ipaddress.IPv4Network(network_cidr)
    first = next(vpc.subnets(prefixlen_diff=3 if count <= 7 else 4 if count <= 15 else 5))
    extra = 3 if count <= 8 else 4 if count <= 16 else 5
    if first.prefixlen + extra > 28:
        raise SpecInvalid([f"--network-cidr: {network_cidr} is too small for {count} utility subnets"])
    return [str(b) for b in list(first.subnets(prefixlen_diff=extra))[:count]]


def free_blocks(vpc_cidr: str, taken: list[str], prefix: int, count: int) -> list[str]:
    """``count`` /``prefix`` blocks of the VPC overlapping none of ``taken``, lowest first,
    skipping the first block as ``carve_subnets`` does (fewer when the VPC is full)."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    used = [ipaddress.IPv4Network(t) for t in taken]
    out: list[str] = []
    for block in list(vpc.subnets(new_prefix=min(max(prefix, vpc.prefixlen), 28)))[1:]:
        if not any(block.overlaps(u) for u in used):
            out.append(str(block))
            used.append(block)
            if len(out) == count:
                break
    return out


def _existing_cidrs(opts: CreateOptions, zones: list[str], given: dict[str, tuple[str, str]], bits: int, what: str) -> list[str]:
    """Per zone: the given subnet's CIDR, or a free block of the existing VPC."""
    vpc = ipaddress.IPv4Network(opts.network_cidr)
    needed = [z for z in zones if z not in given]
    free = free_blocks(opts.network_cidr, opts.taken_cidrs + [c for _, c in given.values()], vpc.prefixlen + bits, len(needed))
    if len(free) < len(needed):
        raise SpecInvalid([f"--network-id: VPC {opts.network_id} ({opts.network_cidr}) has no free /{vpc.prefixlen + bits} "
                           f"left for the {what} subnets of {', '.join(needed[len(free):])}; name existing ones instead"])
    carved = dict(zip(needed, free))
    opts.taken_cidrs.extend(free)
    return [given[z][1] if z in given else carved[z] for z in zones]


def _subnets(opts: CreateOptions, zones: list[str]) -> list[Subnet]:
    """Public: one subnet per zone. Private: a Private subnet per zone (named by its zone, as
    kops names them, so instance groups name zones either way) and a Utility one
    (``utility-<zone>``); with a single NAT every Private subnet routes through the first zone's.
    In an existing VPC, named subnets are used as they are and the rest carved from free space."""
    existing = bool(opts.network_id)
    bits = 3 if len(zones) <= 7 else 4 if len(zones) <= 15 else 5
    cidrs = _existing_cidrs(opts, zones, opts.subnet_ids, bits, "zone") if existing else carve_subnets(opts.network_cidr, len(zones))
    ids = {z: opts.subnet_ids[z][0] for z in opts.subnet_ids}
    if opts.topology != TOPOLOGY_PRIVATE:
        return [Subnet(name=z, zone=z, cidr=cidr, type=SUBNET_PUBLIC, id=ids.get(z, "")) for z, cidr in zip(zones, cidrs)]
    if opts.nat not in NAT_MODES:
        raise SpecInvalid([f"--nat: {opts.nat!r} is not one of {', '.join(NAT_MODES)}"])
    egress = f"utility-{zones[0]}" if opts.nat == NAT_SINGLE else ""
    private = [Subnet(name=z, zone=z, cidr=cidr, type=SUBNET_PRIVATE, egress=egress, id=ids.get(z, "")) for z, cidr in zip(zones, cidrs)]
    utility_cidr = (_existing_cidrs(opts, zones, opts.utility_subnet_ids, bits + 3, "utility") if existing
                    else utility_cidrs(opts.network_cidr, len(zones)))
    utility = [Subnet(name=f"utility-{z}", zone=z, cidr=cidr, type=SUBNET_UTILITY, id=opts.utility_subnet_ids.get(z, ("", ""))[0])
               for z, cidr in zip(zones, utility_cidr)]
    return private + utility


def new_cluster(opts: CreateOptions) -> tuple[Cluster, list[InstanceGroup]]:
    # Counts are checked before anything is built from them: --control-plane-count 1000000000
    # would otherwise build a billion groups before validation saw one.
    if opts.control_plane_count not in CONTROL_PLANE_COUNTS:
        raise SpecInvalid([f"--control-plane-count: {_short(opts.control_plane_count)}; etcd needs 1, 3 or 5 control-plane instances"])
    if opts.node_count > MAX_GROUP_SIZE:
        raise SpecInvalid([f"--node-count: {_short(opts.node_count)} is more than {MAX_GROUP_SIZE}"])
    given = [z.strip() for z in opts.zones if z.strip()]
    zones = list(dict.fromkeys(given))
    if not zones:
        raise SpecInvalid(["--zones: at least one availability zone is required (e.g. --zones us-east-1a)"])
    if len(zones) != len(given):
        twice = sorted({z for z in given if given.count(z) > 1})
        raise SpecInvalid([f"--zones: {', '.join(twice)} given more than once; name each zone once"])
    cp_given = [z.strip() for z in opts.control_plane_zones if z.strip()]
    if len(set(cp_given)) != len(cp_given):
        raise SpecInvalid(["--control-plane-zones: a zone is given more than once; name each zone once"])
    if opts.topology not in (TOPOLOGY_PUBLIC, TOPOLOGY_PRIVATE):
        raise SpecInvalid([f"--topology: {opts.topology!r} is not one of {TOPOLOGY_PUBLIC}, {TOPOLOGY_PRIVATE}"])
    if opts.bastion and opts.topology != TOPOLOGY_PRIVATE:
        raise SpecInvalid(["--bastion: needs --topology private (in a public cluster every instance has a public IP)"])
    subnets = _subnets(opts, zones)
    cluster = Cluster(
        name=opts.name,
        kubernetes_version=opts.kubernetes_version,
        subnets=subnets,
        network_cidr=opts.network_cidr,
        ssh_access=list(opts.ssh_access),
        kubernetes_api_access=list(opts.api_access),
        networking=opts.networking,
        topology=opts.topology,
        network_id=opts.network_id,
    )
    cp_zones = list(dict.fromkeys(opts.control_plane_zones)) or zones
    unknown = [z for z in cp_zones if z not in zones]
    if unknown:
        raise SpecInvalid([f"--control-plane-zones: {', '.join(unknown)} not in --zones {', '.join(zones)}"])
    groups: list[InstanceGroup] = []
    count = opts.control_plane_count
    # One group per control-plane instance, spread round-robin over the control-plane zones.
    for i in range(count):
        zone = cp_zones[i % len(cp_zones)]
        name = f"control-plane-{zone}"
        if count > len(cp_zones):
            name += f"-{i // len(cp_zones) + 1}"
        groups.append(
            InstanceGroup(
                name=name,
                cluster_name=opts.name,
                role=ROLE_CONTROL_PLANE,
                machine_type=opts.control_plane_size,
                min_size=1,
                max_size=1,
                subnets=[zone],
                image=opts.image,
                root_volume_size=CONTROL_PLANE_ROOT_VOLUME,
            )
        )
    groups.append(
        InstanceGroup(
            name="nodes",
            cluster_name=opts.name,
            role=ROLE_NODE,
            machine_type=opts.node_size,
            min_size=opts.node_count,
            max_size=opts.node_count,
            subnets=list(zones),
            image=opts.image,
            root_volume_size=NODE_ROOT_VOLUME,
        )
    )
    if opts.bastion:
        groups.append(InstanceGroup(
            name="bastions", cluster_name=opts.name, role=ROLE_BASTION, machine_type=BASTION_MACHINE_TYPE,
            min_size=1, max_size=1, subnets=[f"utility-{z}" for z in zones], image=opts.image,
            root_volume_size=BASTION_ROOT_VOLUME,
        ))
    return cluster, groups

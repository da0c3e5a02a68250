"""An existing VPC to build a cluster in (``spec.networkID``): read it, say what is wrong with
it, and find free address space in it.

kopsy never changes what it did not make: the VPC, its internet gateway, NAT gateways, route
tables and the subnets the user named stay as they are (they only get the cluster's
``kubernetes.io/cluster/<name>=shared`` tag, which ``delete`` takes off again). What kopsy adds
(subnets, route tables, groups, ...) is carved out of the VPC's free ranges and tagged owned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.session import AwsClients, aws_errors, error_code
from kopsy.errors import CloudError
from kopsy.spec.model import Cluster


@dataclass(frozen=True)
class ExistingSubnet:
    id: str
    vpc: str
    zone: str
    cidr: str


@dataclass(frozen=True)
class ExistingNetwork:
    """What kopsy needs to know of a VPC it does not own."""

    id: str
    cidr: str
    dns_hostnames: bool
    dns_support: bool
    internet_gateway: str  # the attached one, "" for none
    subnets: dict[str, ExistingSubnet] = field(default_factory=dict)  # every subnet of the VPC, by id


def read_network(clients: AwsClients, vpc_id: str, extra_subnets: Sequence[str] = ()) -> ExistingNetwork:
    """One read of the VPC, its attributes, gateway and subnets (plus ``extra_subnets`` by id,
    which may lie in another VPC: that is what the caller wants to refuse by name)."""
    ec2 = clients.client("ec2")
    with aws_errors(f"reading VPC {vpc_id}"):
        try:
            (vpc,) = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"]
        except Exception as exc:
            if error_code(exc) == "InvalidVpcID.NotFound":
                raise CloudError(f"VPC {vpc_id} does not exist in {clients.region}; check --network-id (spec.networkID)") from exc
            raise
        hostnames = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]
        support = ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute="enableDnsSupport")["EnableDnsSupport"]["Value"]
        gateways = describe_all(ec2, "describe_internet_gateways", "InternetGateways",
                                Filters=[{"Name": "attachment.vpc-id", "Values": [vpc_id]}])
        subnets = describe_all(ec2, "describe_subnets", "Subnets", Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
        missing = sorted(set(extra_subnets) - {s["SubnetId"] for s in subnets})
        if missing:
            try:
                subnets += describe_all(ec2, "describe_subnets", "Subnets", SubnetIds=missing)
            except Exception as exc:
                if error_code(exc) == "InvalidSubnetID.NotFound":
                    raise CloudError(f"subnet(s) {', '.join(missing)} do not exist in {clients.region}") from exc
                raise
    return ExistingNetwork(
        id=vpc_id, cidr=str(vpc["CidrBlock"]), dns_hostnames=bool(hostnames), dns_support=bool(support),
        internet_gateway=str(gateways[0]["InternetGatewayId"]) if gateways else "",
        subnets={s["SubnetId"]: ExistingSubnet(s["SubnetId"], s["VpcId"], s["AvailabilityZone"], s["CidrBlock"]) for s in subnets},
    )


def network_problems(c: Cluster, net: ExistingNetwork) -> list[str]:
    """Why ``c`` cannot be built in ``net`` (empty: it can). Pure."""
    problems = []
    if not (net.dns_support and net.dns_hostnames):
        problems.append(f"VPC {net.id} has DNS {'hostnames' if net.dns_support else 'support'} off; kopsy needs both on "
                        f"(instances register by their DNS names): aws ec2 modify-vpc-attribute --vpc-id {net.id} "
                        f"--enable-dns-{'hostnames' if net.dns_support else 'support'}")
    for s in c.subnets:
        if not s.id:
            continue
        found = net.subnets.get(s.id)
        if found is None:
            problems.append(f"subnet {s.id} ({s.name}) does not exist")
        elif found.vpc != net.id:
            problems.append(f"subnet {s.id} ({s.name}) is in VPC {found.vpc}, not in {net.id}")
        elif found.zone != s.zone:
            problems.append(f"subnet {s.id} ({s.name}) is in zone {found.zone}, not in {s.zone}")
    if not net.internet_gateway and any(not s.is_private and not s.id for s in c.subnets):
        problems.append(f"VPC {net.id} has no internet gateway, and the cluster's public subnets need one "
                        f"(attach one, or name existing public subnets with --subnets/--utility-subnets)")
    return problems


def subnets_by_zone(net: ExistingNetwork, ids: Sequence[str], zones: Sequence[str], flag: str) -> dict[str, tuple[str, str]]:
    """``--subnets``/``--utility-subnets`` ids -> {zone: (id, cidr)}: each in the VPC, in one of
    the cluster's zones, one per zone. Pure; raises ``CloudError`` naming the subnet."""
    out: dict[str, tuple[str, str]] = {}
    for sid in ids:
        s = net.subnets.get(sid)
        if s is None:
            raise CloudError(f"{flag}: subnet {sid} does not exist")
        if s.vpc != net.id:
            raise CloudError(f"{flag}: subnet {sid} is in VPC {s.vpc}, not in {net.id} (--network-id)")
        if s.zone not in zones:
            raise CloudError(f"{flag}: subnet {sid} is in zone {s.zone}, which is not one of --zones {','.join(zones)}")
        if s.zone in out:
            raise CloudError(f"{flag}: subnets {out[s.zone][0]} and {sid} are both in zone {s.zone}; name one per zone")
        out[s.zone] = (sid, s.cidr)
    return out

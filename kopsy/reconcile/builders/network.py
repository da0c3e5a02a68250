"""The network: VPC, subnets, the internet gateway and route tables (plus, in a private
topology, a NAT gateway and Elastic IP per Utility subnet that Private subnets go out through,
and a route table per NAT gateway), and the security groups with kops' rule set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.names import nat_name, private_route_table_name, shared_tag_name, subnet_name
from kopsy.cloud.aws.securitygroups import ALL_EGRESS, kops_rules
from kopsy.reconcile.builders.base import group_ref, resource, subnet_refs, vpc_ref
from kopsy.reconcile.values import Desired, Ref
from kopsy.spec.model import ROLE_BASTION, ROLE_CONTROL_PLANE, ROLE_NODE, SUBNET_PRIVATE, Cluster

if TYPE_CHECKING:
    from kopsy.reconcile.desired import ClusterInputs

SG_ROLES = {"control-plane": ROLE_CONTROL_PLANE, "nodes": ROLE_NODE, "api-elb": T.ROLE_API, "api-internal": T.ROLE_API_INTERNAL,
            "bastion": ROLE_BASTION}
# The tags the AWS load balancer controller and cloud-controller-manager pick subnets by.
_SUBNET_ROLE_TAGS = {"Private": {"kubernetes.io/role/internal-elb": "1"}}


def build(inp: ClusterInputs) -> list[Desired]:
    c = inp.cluster
    name = c.name
    vpc = vpc_ref(c)
    subnets = subnet_refs(c)
    out: list[Desired] = []
    if c.network_id:  # an existing VPC: not ours to change, only tagged shared (so are named subnets)
        out += [resource(name, "SharedTag", shared_tag_name(rid), {"resource": rid})
                for rid in [c.network_id] + [s.id for s in c.subnets if s.id]]
        gateway: Ref | str = inp.internet_gateway
    else:
        out.append(resource(name, "VPC", name, {"cidr": c.network_cidr, "dns_support": True, "dns_hostnames": True}))
        out.append(resource(name, "InternetGateway", name, {"vpc": vpc}))
        gateway = Ref("InternetGateway", name)
    for s in c.subnets:
        if s.id:
            continue
        role_tags = _SUBNET_ROLE_TAGS.get(s.type, {"kubernetes.io/role/elb": "1"})
        out.append(resource(name, "Subnet", subnet_name(s.name, name),
                            {"vpc": vpc, "cidr": s.cidr, "zone": s.zone, "map_public_ip": s.type != SUBNET_PRIVATE},
                            **{"SubnetType": s.type, **role_tags}))
    public = [subnets[s.name] for s in c.subnets if s.type != SUBNET_PRIVATE and not s.id]
    if public:  # only kopsy's own subnets are associated: an existing one keeps its routes
        out.append(resource(name, "RouteTable", name, {
            "vpc": vpc,
            "routes": frozenset({("0.0.0.0/0", gateway)}),
            "subnets": frozenset(public),
        }))
    out.extend(_nat(c, subnets))
    for sg_role, ingress in kops_rules(name, c.ssh_access, c.kubernetes_api_access, bastion=_has_bastion(inp)).items():
        group = group_ref(sg_role, name)
        out.append(resource(name, "SecurityGroup", group.name, {"vpc": vpc, "description": f"Security group for {sg_role} of {name}"},
                            SG_ROLES[sg_role]))
        out.append(resource(name, "SecurityGroupRules", group.name, {"group": group, "ingress": ingress, "egress": frozenset({ALL_EGRESS})},
                            SG_ROLES[sg_role]))
    return out


def _has_bastion(inp: ClusterInputs) -> bool:
    return any(ig.role == ROLE_BASTION for ig in inp.instance_groups)


def _nat(c: Cluster, subnets: dict[str, Ref | str]) -> list[Desired]:
    """Per Utility subnet that some Private subnet goes out through: an Elastic IP, a NAT gateway
    holding it, and the route table of those Private subnets (0.0.0.0/0 -> that gateway)."""
    by_nat: dict[str, list[str]] = {}
    for s in c.subnets_of(SUBNET_PRIVATE):
        if s.id:  # an existing private subnet keeps the routes it has
            continue
        utility = c.nat_subnet(s)
        if utility is not None:  # validation refuses a Private subnet without one
            by_nat.setdefault(utility.name, []).append(s.name)
    out: list[Desired] = []
    for utility_name, private in sorted(by_nat.items()):
        nat = nat_name(utility_name, c.name)
        out.append(resource(c.name, "ElasticIP", nat, {"domain": "vpc"}))
        out.append(resource(c.name, "NatGateway", nat, {
            "subnet": subnets[utility_name], "allocation": Ref("ElasticIP", nat), "available": True,
        }))
        out.append(resource(c.name, "RouteTable", private_route_table_name(utility_name, c.name), {
            "vpc": vpc_ref(c),
            "routes": frozenset({("0.0.0.0/0", Ref("NatGateway", nat))}),
            "subnets": frozenset(subnets[p] for p in private),
        }))
    return out

"""The network: VPC, one public subnet per spec subnet, the internet gateway and route table,
and the security groups with kops' rule set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.securitygroups import ALL_EGRESS, kops_rules
from kopsy.reconcile.builders.base import group_ref, resource, subnet_refs, vpc_ref
from kopsy.reconcile.values import Desired, Ref
from kopsy.spec.model import ROLE_CONTROL_PLANE, ROLE_NODE

if TYPE_CHECKING:
    from kopsy.reconcile.desired import ClusterInputs

SG_ROLES = {"control-plane": ROLE_CONTROL_PLANE, "nodes": ROLE_NODE, "api-elb": T.ROLE_API, "api-internal": T.ROLE_API_INTERNAL}


def build(inp: ClusterInputs) -> list[Desired]:
    c = inp.cluster
    name = c.name
    vpc = vpc_ref(c)
    subnets = subnet_refs(c)
    out = [resource(name, "VPC", name, {"cidr": c.network_cidr, "dns_support": True, "dns_hostnames": True})]
    for s in c.subnets:
        out.append(resource(name, "Subnet", subnets[s.name].name, {"vpc": vpc, "cidr": s.cidr, "zone": s.zone, "map_public_ip": True},
                            **{"SubnetType": "Public", "kubernetes.io/role/elb": "1"}))
    out.append(resource(name, "InternetGateway", name, {"vpc": vpc}))
    out.append(resource(name, "RouteTable", name, {
        "vpc": vpc,
        "routes": frozenset({("0.0.0.0/0", Ref("InternetGateway", name))}),
        "subnets": frozenset(subnets.values()),
    }))
    for sg_role, ingress in kops_rules(name, c.ssh_access, c.kubernetes_api_access).items():
        group = group_ref(sg_role, name)
        out.append(resource(name, "SecurityGroup", group.name, {"vpc": vpc, "description": f"Security group for {sg_role} of {name}"},
                            SG_ROLES[sg_role]))
        out.append(resource(name, "SecurityGroupRules", group.name, {"group": group, "ingress": ingress, "egress": frozenset({ALL_EGRESS})},
                            SG_ROLES[sg_role]))
    return out

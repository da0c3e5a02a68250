"""Every resource kind kopsy knows, in an order where each kind comes after those it depends on.

``update`` plans the managed kinds in this order; ``delete`` reverses the dependencies (plus
each kind's ``delete_after``) to know what must be gone before what.
"""

from __future__ import annotations

from kopsy.cloud.aws.autoscaling import AutoScalingGroup
from kopsy.cloud.aws.controllers import ClassicLoadBalancer, Snapshot
from kopsy.cloud.aws.iam import IAMInstanceProfile, IAMRole
from kopsy.cloud.aws.instances import Instance, NetworkInterface, Volume
from kopsy.cloud.aws.keypair import KeyPair
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.launchtemplate import LaunchTemplate
from kopsy.cloud.aws.loadbalancer import Listener, LoadBalancer, TargetGroup
from kopsy.cloud.aws.nat import ElasticIP, NatGateway
from kopsy.cloud.aws.securitygroups import SecurityGroup, SecurityGroupRules
from kopsy.cloud.aws.sharedtag import SharedTag
from kopsy.cloud.aws.vpc import VPC, InternetGateway, RouteTable, Subnet

ALL_KINDS: tuple[Kind, ...] = (
    IAMRole(),
    IAMInstanceProfile(),
    VPC(),
    SharedTag(),
    Subnet(),
    InternetGateway(),
    ElasticIP(),
    NatGateway(),
    RouteTable(),
    SecurityGroup(),
    SecurityGroupRules(),
    KeyPair(),
    TargetGroup(),
    LoadBalancer(),
    Listener(),
    ClassicLoadBalancer(),
    LaunchTemplate(),
    AutoScalingGroup(),
    Instance(),
    Volume(),
    NetworkInterface(),
    Snapshot(),
)

KINDS: dict[str, Kind] = {k.kind: k for k in ALL_KINDS}
MANAGED_KINDS: tuple[Kind, ...] = tuple(k for k in ALL_KINDS if k.managed)


def required_permissions() -> list[str]:
    """Every IAM action kopsy needs to manage clusters (the operator's policy)."""
    return sorted({p for k in ALL_KINDS for p in k.permissions})

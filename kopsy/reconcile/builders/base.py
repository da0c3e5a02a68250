"""What every builder shares: the resource constructor that stamps kopsy's tags, and the
references by which one builder's resources are reached from another's (by the deterministic
names of ``kopsy/cloud/aws/names.py``).

Builders never hand each other values: a reference is a ``Ref`` to a deterministic name, so
each builder reads only the spec and adding one never means editing another.
"""

from __future__ import annotations

from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.names import security_group_name, subnet_name
from kopsy.reconcile.values import Desired, Ref
from kopsy.spec.model import Cluster


def resource(cluster: str, kind: str, name: str, fields: dict[str, Any], role: str = "", **extra_tags: str) -> Desired:
    """A desired resource with the tags every kopsy resource of ``cluster`` carries."""
    return Desired(kind, name, fields, T.cluster_tags(cluster, name, role, **extra_tags))


def vpc_ref(c: Cluster) -> Ref | str:
    """The network builder's VPC, or the id of the existing one (``spec.networkID``)."""
    return c.network_id or Ref("VPC", c.name)


def subnet_refs(c: Cluster) -> dict[str, Ref | str]:
    """Spec subnet name -> the network builder's subnet, or the id of an existing one."""
    return {s.name: s.id or Ref("Subnet", subnet_name(s.name, c.name)) for s in c.subnets}


def public_subnet_refs(c: Cluster) -> frozenset[Ref | str]:
    """The subnets routed to the internet gateway (Public, or Utility in a private topology):
    where internet-facing load balancers, NAT gateways and bastions go."""
    refs = subnet_refs(c)
    return frozenset(refs[s.name] for s in c.subnets if not s.is_private)


def instance_subnet_refs(c: Cluster) -> frozenset[Ref | str]:
    """The subnets the cluster's instances live in (Private ones in a private topology): where the
    internal load balancer goes."""
    refs = subnet_refs(c)
    return frozenset(refs[s.name] for s in c.subnets if s.is_private == c.private)


def group_ref(role: str, cluster: str) -> Ref:
    """The security group of ``role`` ('control-plane', 'nodes', 'api-elb')."""
    return Ref("SecurityGroup", security_group_name(role, cluster))

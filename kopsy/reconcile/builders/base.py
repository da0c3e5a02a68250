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


def vpc_ref(c: Cluster) -> Ref:
    return Ref("VPC", c.name)


def subnet_refs(c: Cluster) -> dict[str, Ref]:
    """Spec subnet name -> the network builder's subnet."""
    return {s.name: Ref("Subnet", subnet_name(s.name, c.name)) for s in c.subnets}


def group_ref(role: str, cluster: str) -> Ref:
    """The security group of ``role`` ('control-plane', 'nodes', 'api-elb')."""
    return Ref("SecurityGroup", security_group_name(role, cluster))

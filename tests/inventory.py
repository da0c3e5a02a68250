"""The tests' one inventory of a cluster's resources in the (emulated) cloud: every resource of
every kind in ``kopsy.cloud.aws.registry.ALL_KINDS`` that carries the cluster's ownership tag,
plus the cluster's IAM names, read by direct boto3 calls, service by service (moto's tagging
API misses several kinds), never through kopsy's own ``find``.

Leak checks use it: ``total(inventory(boto, NAME)) == 0`` after ``delete --yes``. A kind added
to the registry needs a lister here (``tests/test_inventory.py`` fails until it has one), so a
leaked NAT gateway or Elastic IP cannot go unseen.

``boto`` is any callable from a service name to a boto3 client pointed at the endpoint (the
``boto`` fixture, ``AwsClients.client``, a sandbox's clients).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Boto = Callable[[str], Any]
OWNED = "owned"


def _key(cluster: str) -> str:
    return f"kubernetes.io/cluster/{cluster}"


def _flt(cluster: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{_key(cluster)}", "Values": [OWNED]}]


def _tags(items: Any) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or []}


def _pages(client: Any, operation: str, result_key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item, following NextToken (moto pages some describes without saying so)."""
    if client.can_paginate(operation):
        return [i for page in client.get_paginator(operation).paginate(**kwargs) for i in page.get(result_key, [])]
    return list(getattr(client, operation)(**kwargs).get(result_key, []))


def _ec2(operation: str, result_key: str, id_key: str) -> Callable[[Boto, str], list[str]]:
    def lister(boto: Boto, cluster: str) -> list[str]:
        return [i[id_key] for i in _pages(boto("ec2"), operation, result_key, Filters=_flt(cluster))]

    return lister


def _instances(boto: Boto, cluster: str) -> list[str]:
    reservations = _pages(boto("ec2"), "describe_instances", "Reservations", Filters=_flt(cluster))
    return [i["InstanceId"] for r in reservations for i in r["Instances"] if i["State"]["Name"] != "terminated"]


def _rules(boto: Boto, cluster: str) -> list[str]:
    """The owned groups that hold any rule (a group's rules are SecurityGroupRules' resource)."""
    groups = _pages(boto("ec2"), "describe_security_groups", "SecurityGroups", Filters=_flt(cluster))
    return [g["GroupId"] for g in groups if g.get("IpPermissions") or g.get("IpPermissionsEgress")]


def _owned_arns(boto: Boto, cluster: str, operation: str, result_key: str, arn_key: str) -> list[str]:
    elb = boto("elbv2")
    arns = [i[arn_key] for i in _pages(elb, operation, result_key)]
    owned = []
    for start in range(0, len(arns), 20):  # DescribeTags takes 20 ARNs at most
        for d in elb.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            if _tags(d.get("Tags")).get(_key(cluster)) == OWNED:
                owned.append(d["ResourceArn"])
    return owned


def _load_balancers(boto: Boto, cluster: str) -> list[str]:
    return _owned_arns(boto, cluster, "describe_load_balancers", "LoadBalancers", "LoadBalancerArn")


def _target_groups(boto: Boto, cluster: str) -> list[str]:
    return _owned_arns(boto, cluster, "describe_target_groups", "TargetGroups", "TargetGroupArn")


def _listeners(boto: Boto, cluster: str) -> list[str]:
    elb = boto("elbv2")
    return [li["ListenerArn"] for arn in _load_balancers(boto, cluster)
            for li in _pages(elb, "describe_listeners", "Listeners", LoadBalancerArn=arn)]


def _asgs(boto: Boto, cluster: str) -> list[str]:
    groups = _pages(boto("autoscaling"), "describe_auto_scaling_groups", "AutoScalingGroups")
    return [g["AutoScalingGroupName"] for g in groups if _tags(g.get("Tags")).get(_key(cluster)) == OWNED]


def _iam_names(cluster: str) -> set[str]:
    return {f"control-plane.{cluster}", f"nodes.{cluster}"}


def _roles(boto: Boto, cluster: str) -> list[str]:
    """Roles under the cluster's IAM names (tagged or not: a crash right after CreateRole leaves
    an untagged one), or tagged for the cluster."""
    iam = boto("iam")
    return [
        r["RoleName"] for r in _pages(iam, "list_roles", "Roles")
        if r["RoleName"] in _iam_names(cluster)
        or _tags(iam.get_role(RoleName=r["RoleName"])["Role"].get("Tags")).get(_key(cluster)) == OWNED
    ]


def _profiles(boto: Boto, cluster: str) -> list[str]:
    return [
        p["InstanceProfileName"] for p in _pages(boto("iam"), "list_instance_profiles", "InstanceProfiles")
        if p["InstanceProfileName"] in _iam_names(cluster) or _tags(p.get("Tags")).get(_key(cluster)) == OWNED
    ]


# One lister per kind in kopsy.cloud.aws.registry.ALL_KINDS, under the kind's name.
LISTERS: dict[str, Callable[[Boto, str], list[str]]] = {
    "IAMRole": _roles,
    "IAMInstanceProfile": _profiles,
    "VPC": _ec2("describe_vpcs", "Vpcs", "VpcId"),
    "Subnet": _ec2("describe_subnets", "Subnets", "SubnetId"),
    "InternetGateway": _ec2("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
    "RouteTable": _ec2("describe_route_tables", "RouteTables", "RouteTableId"),
    "SecurityGroup": _ec2("describe_security_groups", "SecurityGroups", "GroupId"),
    "SecurityGroupRules": _rules,
    "KeyPair": _ec2("describe_key_pairs", "KeyPairs", "KeyName"),
    "TargetGroup": _target_groups,
    "LoadBalancer": _load_balancers,
    "Listener": _listeners,
    "LaunchTemplate": _ec2("describe_launch_templates", "LaunchTemplates", "LaunchTemplateId"),
    "AutoScalingGroup": _asgs,
    "Instance": _instances,
    "Volume": _ec2("describe_volumes", "Volumes", "VolumeId"),
    "NetworkInterface": _ec2("describe_network_interfaces", "NetworkInterfaces", "NetworkInterfaceId"),
}


def inventory(boto: Boto, cluster: str) -> dict[str, list[str]]:
    """Every resource of ``cluster``, by kind name: ids (names for IAM, key pairs and ASGs)."""
    return {kind: sorted(lister(boto, cluster)) for kind, lister in LISTERS.items()}


def total(resources: dict[str, list[str]]) -> int:
    return sum(len(v) for v in resources.values())


def present(resources: dict[str, list[str]]) -> dict[str, list[str]]:
    """Only the kinds that have resources (for a readable assertion message)."""
    return {k: v for k, v in resources.items() if v}

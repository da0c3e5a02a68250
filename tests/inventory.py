"""The tests' one inventory of a cluster's resources in the (emulated) cloud: every resource of
every kind in ``kopsy.cloud.aws.registry.ALL_KINDS`` tagged for the cluster by either scheme
(the ownership tag ``kubernetes.io/cluster/<name>=owned``, or ``KubernetesCluster=<name>``,
which Kubernetes' controllers also use), plus the cluster's IAM names, read by direct boto3
calls, service by service (moto's tagging API misses several kinds), never through kopsy's own
``find``.

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


def _filters(cluster: str) -> list[list[dict[str, Any]]]:
    """One EC2 describe filter per tagging scheme (filters AND, so the schemes take a call each)."""
    return [[{"Name": f"tag:{_key(cluster)}", "Values": [OWNED]}], [{"Name": "tag:KubernetesCluster", "Values": [cluster]}]]


def _tags(items: Any) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or []}


def _tagged(tags: dict[str, str], cluster: str) -> bool:
    return tags.get(_key(cluster)) == OWNED or tags.get("KubernetesCluster") == cluster


def _ec2_items(boto: Boto, cluster: str, operation: str, result_key: str, id_key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The items of an EC2 describe tagged for the cluster by either scheme, each once."""
    seen: dict[str, dict[str, Any]] = {}
    for flt in _filters(cluster):
        for item in _pages(boto("ec2"), operation, result_key, Filters=flt, **kwargs):
            seen.setdefault(item[id_key], item)
    return list(seen.values())


def _pages(client: Any, operation: str, result_key: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Every item, following NextToken (moto pages some describes without saying so)."""
    if client.can_paginate(operation):
        return [i for page in client.get_paginator(operation).paginate(**kwargs) for i in page.get(result_key, [])]
    return list(getattr(client, operation)(**kwargs).get(result_key, []))


def _ec2(operation: str, result_key: str, id_key: str) -> Callable[[Boto, str], list[str]]:
    def lister(boto: Boto, cluster: str) -> list[str]:
        return [i[id_key] for i in _ec2_items(boto, cluster, operation, result_key, id_key)]

    return lister


def _instances(boto: Boto, cluster: str) -> list[str]:
    seen: dict[str, str] = {}
    for flt in _filters(cluster):
        for r in _pages(boto("ec2"), "describe_instances", "Reservations", Filters=flt):
            seen.update({i["InstanceId"]: i["State"]["Name"] for i in r["Instances"]})
    return [iid for iid, state in seen.items() if state != "terminated"]


def _rules(boto: Boto, cluster: str) -> list[str]:
    """The owned groups that hold any rule (a group's rules are SecurityGroupRules' resource)."""
    groups = _ec2_items(boto, cluster, "describe_security_groups", "SecurityGroups", "GroupId")
    return [g["GroupId"] for g in groups if g.get("IpPermissions") or g.get("IpPermissionsEgress")]


def _owned_arns(boto: Boto, cluster: str, operation: str, result_key: str, arn_key: str) -> list[str]:
    elb = boto("elbv2")
    arns = [i[arn_key] for i in _pages(elb, operation, result_key)]
    owned = []
    for start in range(0, len(arns), 20):  # DescribeTags takes 20 ARNs at most
        for d in elb.describe_tags(ResourceArns=arns[start : start + 20])["TagDescriptions"]:
            if _tagged(_tags(d.get("Tags")), cluster):
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
    return [g["AutoScalingGroupName"] for g in groups if _tagged(_tags(g.get("Tags")), cluster)]


def _classic_load_balancers(boto: Boto, cluster: str) -> list[str]:
    """Classic ELBs (the cloud-controller-manager's default for a LoadBalancer Service)."""
    elb = boto("elb")
    names = [lb["LoadBalancerName"] for lb in _pages(elb, "describe_load_balancers", "LoadBalancerDescriptions")]
    owned = []
    for start in range(0, len(names), 20):  # DescribeTags takes 20 names at most
        for d in elb.describe_tags(LoadBalancerNames=names[start : start + 20]).get("TagDescriptions", []):
            if _tagged(_tags(d.get("Tags")), cluster):
                owned.append(d["LoadBalancerName"])
    return owned


def _snapshots(boto: Boto, cluster: str) -> list[str]:
    """EBS snapshots (the EBS CSI driver's VolumeSnapshots), this account's only."""
    return [s["SnapshotId"] for s in _ec2_items(boto, cluster, "describe_snapshots", "Snapshots", "SnapshotId", OwnerIds=["self"])]


def _addresses(boto: Boto, cluster: str) -> list[str]:
    """Elastic IPs still allocated (a released one is gone from the answer)."""
    return [a["AllocationId"] for a in boto("ec2").describe_addresses()["Addresses"] if _tagged(_tags(a.get("Tags")), cluster)]


def _nat_gateways(boto: Boto, cluster: str) -> list[str]:
    """NAT gateways not yet deleted. Tags are checked here: moto ignores tag filters on
    DescribeNatGateways, and AWS lists deleted gateways for an hour."""
    gateways = _pages(boto("ec2"), "describe_nat_gateways", "NatGateways")
    return [g["NatGatewayId"] for g in gateways if g.get("State") != "deleted" and _tagged(_tags(g.get("Tags")), cluster)]


def _shared_tags(boto: Boto, cluster: str) -> list[str]:
    """Existing resources (a VPC, subnets) still carrying the cluster's ``shared`` tag."""
    tags = _pages(boto("ec2"), "describe_tags", "Tags", Filters=[{"Name": "key", "Values": [_key(cluster)]},
                                                                  {"Name": "value", "Values": ["shared"]}])
    return [t["ResourceId"] for t in tags if t.get("Key") == _key(cluster) and t.get("Value") == "shared"]


def _iam_names(cluster: str) -> set[str]:
    return {f"control-plane.{cluster}", f"nodes.{cluster}"}


def _roles(boto: Boto, cluster: str) -> list[str]:
    """Roles under the cluster's IAM names (tagged or not: a crash right after CreateRole leaves
    an untagged one), or tagged for the cluster."""
    iam = boto("iam")
    return [
        r["RoleName"] for r in _pages(iam, "list_roles", "Roles")
        if r["RoleName"] in _iam_names(cluster)
        or _tagged(_tags(iam.get_role(RoleName=r["RoleName"])["Role"].get("Tags")), cluster)
    ]


def _profiles(boto: Boto, cluster: str) -> list[str]:
    return [
        p["InstanceProfileName"] for p in _pages(boto("iam"), "list_instance_profiles", "InstanceProfiles")
        if p["InstanceProfileName"] in _iam_names(cluster) or _tagged(_tags(p.get("Tags")), cluster)
    ]


# One lister per kind in kopsy.cloud.aws.registry.ALL_KINDS, under the kind's name. Kinds that
# only delete sweeps (what Kubernetes' controllers make) are listed as soon as they exist in AWS,
# before the registry has them: an extra lister can only show more, never hide a leak.
LISTERS: dict[str, Callable[[Boto, str], list[str]]] = {
    "IAMRole": _roles,
    "IAMInstanceProfile": _profiles,
    "VPC": _ec2("describe_vpcs", "Vpcs", "VpcId"),
    "Subnet": _ec2("describe_subnets", "Subnets", "SubnetId"),
    "InternetGateway": _ec2("describe_internet_gateways", "InternetGateways", "InternetGatewayId"),
    "SharedTag": _shared_tags,
    "ElasticIP": _addresses,
    "NatGateway": _nat_gateways,
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
    "ClassicLoadBalancer": _classic_load_balancers,
    "Snapshot": _snapshots,
}


def inventory(boto: Boto, cluster: str) -> dict[str, list[str]]:
    """Every resource of ``cluster``, by kind name: ids (names for IAM, key pairs and ASGs)."""
    return {kind: sorted(lister(boto, cluster)) for kind, lister in LISTERS.items()}


def total(resources: dict[str, list[str]]) -> int:
    return sum(len(v) for v in resources.values())


def present(resources: dict[str, list[str]]) -> dict[str, list[str]]:
    """Only the kinds that have resources (for a readable assertion message)."""
    return {k: v for k, v in resources.items() if v}

"""Auto Scaling groups and their instances: the one reader every part of kopsy shares.

update (``AutoScalingGroup.find``), validate, the sandbox and rolling-update all need "which
groups are there, which instances do they hold, in what state". They read it here: a fetch
(paginated describes, filtered by tag on the server, so the cost does not grow with the
account) and a pure parser from the raw answers to typed values. The parser is tested on
recorded raw answers (``tests/cloud/raw_answers/``), so a field it drops fails a test.

Reading never changes anything. The fetch halves are separate because not every reader needs
both: update's plan needs only the groups, the sandbox only the instances, and each describe
is an API call on every plan or poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.session import aws_errors

RUNNING_STATES = ("pending", "running")


@dataclass(frozen=True)
class InstanceFacts:
    """One EC2 instance as DescribeInstances tells it. kopsy's tags name its group and role."""

    id: str
    instance_group: str = ""  # the kopsy instance-group tag
    role: str = ""  # the kopsy role tag (ControlPlane, Node)
    state: str = ""  # EC2's state name: pending, running, stopping, ...
    private_ip: str = ""
    private_dns: str = ""
    public_ip: str = ""
    zone: str = ""
    subnet: str = ""  # the subnet id (its route table decides the instance's way out)
    cluster: str = ""  # the kopsy cluster tag, else KubernetesCluster
    instance_type: str = ""
    image_id: str = ""
    key_name: str = ""
    launch_time: str = ""  # RFC 3339, UTC
    security_groups: tuple[str, ...] = ()  # the instance's and its network interfaces', sorted
    launch_template_id: str = ""
    launch_template_version: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Member:
    """An instance as its group lists it: lifecycle and health are the group's view of it.

    ``instance`` is its EC2 description when the instances were read too (a group's listing
    can name an instance that DescribeInstances, filtered by state, no longer returns)."""

    id: str
    zone: str = ""
    lifecycle: str = ""  # Pending, InService, Terminating, Detaching, Standby, ...
    health: str = ""  # Healthy, Unhealthy
    launch_template: str = ""  # name
    launch_template_version: str = ""
    instance_type: str = ""
    protected: bool = False  # from scale-in
    instance: InstanceFacts | None = None

    @property
    def state(self) -> str:
        return self.instance.state if self.instance else ""

    @property
    def private_ip(self) -> str:
        return self.instance.private_ip if self.instance else ""

    @property
    def public_ip(self) -> str:
        return self.instance.public_ip if self.instance else ""

    @property
    def tags(self) -> Mapping[str, str]:
        return self.instance.tags if self.instance else {}


@dataclass(frozen=True)
class GroupFacts:
    """One Auto Scaling group (kopsy: one per instance group, named ``names.asg_name``)."""

    name: str
    min_size: int = 0
    max_size: int = 0
    desired: int = 0
    launch_template: str = ""  # name
    launch_template_version: str = ""
    subnets: frozenset[str] = frozenset()
    target_groups: frozenset[str] = frozenset()
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    members: tuple[Member, ...] = ()

    @property
    def instance_group(self) -> str:
        return self.tags.get(T.TAG_INSTANCE_GROUP, "")

    @property
    def in_service(self) -> tuple[str, ...]:
        """The ids of the members the group counts as serving."""
        return tuple(m.id for m in self.members if m.lifecycle == "InService")


@dataclass(frozen=True)
class Inventory:
    groups: Mapping[str, GroupFacts] = field(default_factory=dict)  # by group name
    instances: Mapping[str, InstanceFacts] = field(default_factory=dict)  # by id, as DescribeInstances returned them


# --- fetch ----------------------------------------------------------------------------------


def fetch_groups(autoscaling: Any, filters: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every Auto Scaling group matching ``filters`` (one paginated DescribeAutoScalingGroups)."""
    return describe_all(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups", Filters=list(filters))


def fetch_instances(ec2: Any, filters: Sequence[Mapping[str, Any]], states: Sequence[str] = RUNNING_STATES
                    ) -> list[dict[str, Any]]:
    """Every instance matching ``filters`` in one of ``states`` (one paginated DescribeInstances),
    the reservations flattened away."""
    flt = [*filters, {"Name": "instance-state-name", "Values": list(states)}]
    reservations = describe_all(ec2, "describe_instances", "Reservations", Filters=flt)
    return [i for r in reservations for i in r.get("Instances", [])]


def read_groups(clients: Any, cluster: str, *, filters: Sequence[Mapping[str, Any]] | None = None,
                states: Sequence[str] = RUNNING_STATES) -> Inventory:
    """The cluster's groups with their instances: two batched reads, filtered by the cluster's
    kopsy tag unless ``filters`` says otherwise. ``clients`` is an ``AwsClients``."""
    flt = list(filters) if filters is not None else T.cluster_filter(cluster)
    with aws_errors(f"listing the auto scaling groups of {cluster}"):
        groups = fetch_groups(clients.client("autoscaling"), flt)
    with aws_errors(f"listing the instances of {cluster}"):
        instances = fetch_instances(clients.client("ec2"), flt, states)
    return parse(groups, instances)


# --- parse ----------------------------------------------------------------------------------


def parse(raw_groups: Iterable[Mapping[str, Any]], raw_instances: Iterable[Mapping[str, Any]] = ()) -> Inventory:
    """Raw DescribeAutoScalingGroups groups and DescribeInstances instances -> an ``Inventory``,
    each group's members joined to their instances."""
    instances = {i.id: i for i in map(parse_instance, raw_instances)}
    groups = {g.name: g for g in (parse_group(raw, instances) for raw in raw_groups)}
    return Inventory(groups, instances)


def parse_group(raw: Mapping[str, Any], instances: Mapping[str, InstanceFacts] | None = None) -> GroupFacts:
    lt = _launch_template(raw)
    return GroupFacts(
        name=str(raw["AutoScalingGroupName"]),
        min_size=int(raw.get("MinSize", 0)),
        max_size=int(raw.get("MaxSize", 0)),
        desired=int(raw.get("DesiredCapacity", 0)),
        launch_template=str(lt.get("LaunchTemplateName", "")),
        launch_template_version=str(lt.get("Version", "")),
        subnets=frozenset(s for s in str(raw.get("VPCZoneIdentifier", "")).split(",") if s),
        target_groups=frozenset(raw.get("TargetGroupARNs", [])),
        tags=T.to_dict(raw.get("Tags")),
        members=tuple(_member(m, (instances or {}).get(str(m["InstanceId"]))) for m in raw.get("Instances", [])),
    )


def parse_instance(raw: Mapping[str, Any]) -> InstanceFacts:
    tags = T.to_dict(raw.get("Tags"))
    groups = {str(g["GroupId"]) for g in raw.get("SecurityGroups", []) if g.get("GroupId")}
    for ni in raw.get("NetworkInterfaces", []):
        groups.update(str(g["GroupId"]) for g in ni.get("Groups", []) if g.get("GroupId"))
    return InstanceFacts(
        id=str(raw["InstanceId"]),
        instance_group=tags.get(T.TAG_INSTANCE_GROUP, ""),
        role=tags.get(T.TAG_ROLE, ""),
        state=str((raw.get("State") or {}).get("Name", "")),
        private_ip=str(raw.get("PrivateIpAddress") or ""),
        private_dns=str(raw.get("PrivateDnsName") or ""),
        public_ip=str(raw.get("PublicIpAddress") or ""),
        zone=str((raw.get("Placement") or {}).get("AvailabilityZone", "")),
        subnet=str(raw.get("SubnetId") or ""),
        cluster=tags.get(T.TAG_CLUSTER) or tags.get(T.TAG_KUBERNETES_CLUSTER) or "",
        instance_type=str(raw.get("InstanceType") or ""),
        image_id=str(raw.get("ImageId") or ""),
        key_name=str(raw.get("KeyName") or ""),
        launch_time=_rfc3339(raw.get("LaunchTime")),
        security_groups=tuple(sorted(groups)),
        launch_template_id=tags.get(T.TAG_LAUNCH_TEMPLATE_ID, ""),
        launch_template_version=tags.get(T.TAG_LAUNCH_TEMPLATE_VERSION, ""),
        tags=tags,
    )


def _member(raw: Mapping[str, Any], instance: InstanceFacts | None) -> Member:
    lt = raw.get("LaunchTemplate") or {}
    return Member(
        id=str(raw["InstanceId"]),
        zone=str(raw.get("AvailabilityZone", "")),
        lifecycle=str(raw.get("LifecycleState", "")),
        health=str(raw.get("HealthStatus", "")),
        launch_template=str(lt.get("LaunchTemplateName", "")),
        launch_template_version=str(lt.get("Version", "")),
        instance_type=str(raw.get("InstanceType", "")),
        protected=bool(raw.get("ProtectedFromScaleIn", False)),
        instance=instance,
    )


def _launch_template(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """The group's launch template, whether set directly or through a mixed-instances policy."""
    if raw.get("LaunchTemplate"):
        return raw["LaunchTemplate"]  # type: ignore[no-any-return]
    policy = raw.get("MixedInstancesPolicy") or {}
    return (policy.get("LaunchTemplate") or {}).get("LaunchTemplateSpecification") or {}


def _rfc3339(value: Any) -> str:
    """A LaunchTime (a datetime from botocore, an ISO string in a recording) as ``...Z`` UTC."""
    if isinstance(value, str) and value:
        try:  # Python 3.10's fromisoformat does not read a "Z" suffix
            value = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "")

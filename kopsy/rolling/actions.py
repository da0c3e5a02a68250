"""The AWS calls of a roll. Each takes a whole batch (one call, or one per 20 instances where
the API caps it), so the calls per batch do not grow with the cluster.

Order matters for resuming: an instance is tagged ``TAG_DETACHED`` *before* it is detached,
so a run killed between the two finds it (still in the group, tagged: detach again, which
is idempotent); after the detach it is found by the tag alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from kopsy.cloud.aws.session import aws_errors, error_code
from kopsy.rolling.selection import TAG_DETACHED, TAG_NEEDS_UPDATE

DETACH_LIMIT = 20  # DetachInstances / TerminateInstances batches (AWS caps DetachInstances at 20)
PERMISSIONS = (
    "autoscaling:DetachInstances",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "ec2:CreateTags",
    "ec2:TerminateInstances",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:DescribeTargetHealth",
)


def _chunks(ids: Sequence[str], n: int = DETACH_LIMIT) -> list[list[str]]:
    return [list(ids[i:i + n]) for i in range(0, len(ids), n)]


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def mark(clients: Any, ids: Sequence[str], reason: str) -> None:
    """Tag instances as needing an update, so a rerun replaces them even without ``--force``."""
    if not ids:
        return
    with aws_errors(f"marking {len(ids)} instance(s) for replacement"):
        for chunk in _chunks(ids, 500):
            clients.client("ec2").create_tags(Resources=chunk, Tags=[{"Key": TAG_NEEDS_UPDATE, "Value": reason}])


def detach(clients: Any, asg: str, ids: Sequence[str]) -> None:
    """Tag, then detach without lowering the desired capacity: the group launches replacements now."""
    if not ids:
        return
    with aws_errors(f"detaching {len(ids)} instance(s) from {asg}"):
        clients.client("ec2").create_tags(Resources=list(ids), Tags=[{"Key": TAG_DETACHED, "Value": _now()}])
        for chunk in _chunks(ids):
            try:
                clients.client("autoscaling").detach_instances(
                    AutoScalingGroupName=asg, InstanceIds=chunk, ShouldDecrementDesiredCapacity=False)
            except Exception as exc:  # already detached by a killed run: that is the state we want
                if error_code(exc) != "ValidationError" or "not part of" not in str(exc).lower():
                    raise


def terminate_detached(clients: Any, ids: Sequence[str]) -> None:
    """Terminate instances that are no longer in any group (nothing replaces them)."""
    if not ids:
        return
    with aws_errors(f"terminating {len(ids)} detached instance(s)"):
        for chunk in _chunks(ids, 500):
            clients.client("ec2").terminate_instances(InstanceIds=chunk)


def terminate_in_group(clients: Any, ids: Sequence[str]) -> None:
    """Terminate group members without lowering desired capacity: the group replaces each."""
    with aws_errors(f"terminating {len(ids)} instance(s) in their group"):
        for iid in ids:  # the API takes one instance per call
            try:
                clients.client("autoscaling").terminate_instance_in_auto_scaling_group(
                    InstanceId=iid, ShouldDecrementDesiredCapacity=False)
            except Exception as exc:
                if error_code(exc) != "ValidationError" or "not found" not in str(exc).lower():
                    raise


def deregister(clients: Any, target_groups: Sequence[str], instance_id: str) -> None:
    """Take a control plane out of the API load balancers' target groups (both: public and internal)."""
    with aws_errors(f"deregistering {instance_id} from the API target groups"):
        for arn in sorted(target_groups):
            clients.client("elbv2").deregister_targets(TargetGroupArn=arn, Targets=[{"Id": instance_id}])


def still_registered(clients: Any, target_groups: Sequence[str], instance_id: str) -> list[str]:
    """The target groups in which ``instance_id`` is still a target (draining counts: connections
    may still use it)."""
    left = []
    with aws_errors(f"reading the API target groups' health for {instance_id}"):
        for arn in sorted(target_groups):
            health = clients.client("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
            if any(h["Target"]["Id"] == instance_id and h.get("TargetHealth", {}).get("State") != "unused" for h in health):
                left.append(arn)
    return left

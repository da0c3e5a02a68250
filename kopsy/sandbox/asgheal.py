"""What AWS does and moto does not when an Auto Scaling group replaces an instance: register the
replacement with the group's target groups.

moto registers an ASG's first instances with its ``TargetGroupARNs`` but not the ones it launches
to replace a terminated instance, so in the sandbox a replaced control plane would never sit
behind the API load balancer, unlike on AWS. The supervisor calls ``register_replacements``
whenever the set of running instances changes (docs/sandbox.md).
"""

from __future__ import annotations

from typing import Any

from kopsy.cloud.aws.session import aws_errors


def register_replacements(clients: Any, clusters: set[str]) -> list[tuple[str, str]]:
    """(target group ARN, instance id) pairs registered now, for the ASGs of ``clusters``."""
    asg = clients.client("autoscaling")
    elb = clients.client("elbv2")
    done: list[tuple[str, str]] = []
    with aws_errors("registering replaced instances with their target groups (sandbox)"):
        pages = asg.get_paginator("describe_auto_scaling_groups").paginate(
            Filters=[{"Name": "tag:kopsy.io/cluster", "Values": sorted(clusters)}]) if clusters else []
        for page in pages:
            for g in page["AutoScalingGroups"]:
                live = {i["InstanceId"] for i in g.get("Instances", []) if i.get("LifecycleState") in ("InService", "Pending")}
                for arn in g.get("TargetGroupARNs", []):
                    health = elb.describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
                    missing = sorted(live - {h["Target"]["Id"] for h in health})
                    if missing:
                        elb.register_targets(TargetGroupArn=arn, Targets=[{"Id": i} for i in missing])
                        done += [(arn, i) for i in missing]
    return done

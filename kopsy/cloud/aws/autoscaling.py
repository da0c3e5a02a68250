"""Auto Scaling groups, one per instance group, named ``<ig>.<cluster>``.

The group points at an explicit launch-template version (not ``$Latest``), so a plan can say
exactly which version instances launch from, and a new version is adopted by a visible change.
Creating a group right after its instance profile may hit IAM eventual consistency: that one
error is retried with bounded backoff.
"""

from __future__ import annotations

from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.groups import fetch_groups, parse
from kopsy.cloud.aws.idempotency import create_or_adopt, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.retry import NotYet, is_iam_propagation, retry, wait_until
from kopsy.cloud.aws.session import aws_errors, error_code
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts

AUTOSCALER_PREFIX = "k8s.io/cluster-autoscaler/"  # cluster-autoscaler's tags: on the group, not its instances


def _asg_tags(name: str, tags: dict[str, str], propagate: bool = True) -> list[dict[str, Any]]:
    return [
        {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": propagate}
        for k, v in sorted(tags.items())
    ]


class AutoScalingGroup(Kind):
    kind = "AutoScalingGroup"
    service = "autoscaling"
    id_field = "AutoScalingGroupName"
    depends_on = ("LaunchTemplate", "Subnet", "TargetGroup")
    permissions = (
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:CreateAutoScalingGroup",
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:DeleteTags",
        "autoscaling:AttachLoadBalancerTargetGroups",
        "autoscaling:DetachLoadBalancerTargetGroups",
        "autoscaling:DeleteAutoScalingGroup",
        "iam:PassRole",
        "iam:CreateServiceLinkedRole",
    )

    def find(self, facts: Facts) -> list[Actual]:
        asg = facts.clients.client("autoscaling")
        with aws_errors("reading Auto Scaling groups"):
            raw = facts.once("autoscaling.groups", lambda: fetch_groups(asg, T.owner_filter(facts.cluster)))
        return [
            Actual(
                self.kind,
                g.name,
                g.name,
                fields={
                    "launch_template": g.launch_template,
                    "launch_template_version": g.launch_template_version,
                    "min_size": g.min_size,
                    "max_size": g.max_size,
                    "subnets": g.subnets,
                    "target_groups": g.target_groups,
                    "autoscaler_tags": {k: v for k, v in g.tags.items() if k.startswith(AUTOSCALER_PREFIX)},
                },
                outputs={"id": g.name, "desired": g.desired, "instances": tuple(m.id for m in g.members)},
                tags=dict(g.tags),
            )
            for g in parse(raw).groups.values()
            if T.is_owned(g.tags, facts.cluster)
        ]

    def notes(self, changed: set[str]) -> list[str]:
        if "launch_template_version" in changed:
            return ["instances launched from now on use the new template version; replace running ones to roll it out"]
        return []

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        asg = ctx.clients.client("autoscaling")

        def call() -> dict[str, Any]:
            return asg.create_auto_scaling_group(  # type: ignore[no-any-return]
                AutoScalingGroupName=want.name,
                LaunchTemplate={"LaunchTemplateName": fields["launch_template"], "Version": fields["launch_template_version"]},
                MinSize=fields["min_size"],
                MaxSize=fields["max_size"],
                DesiredCapacity=fields["min_size"],
                VPCZoneIdentifier=",".join(sorted(fields["subnets"])),
                TargetGroupARNs=sorted(fields["target_groups"]),
                Tags=_asg_tags(want.name, want.tags) + _asg_tags(want.name, fields.get("autoscaler_tags", {}), propagate=False),
            )

        def existing() -> tuple[dict[str, Any], dict[str, str]]:
            found = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[want.name])["AutoScalingGroups"][0]
            return found, T.to_dict(found.get("Tags"))

        with aws_errors(f"creating Auto Scaling group {want.name}"):
            g, adopted = create_or_adopt(
                lambda: retry(call, when=is_iam_propagation, timeout=ctx.retry_timeout),
                ("AlreadyExists",), existing, what="Auto Scaling group", name=want.name, cluster=ctx.cluster,
            )
            if adopted:
                have = Actual(
                    self.kind,
                    want.name,
                    want.name,
                    fields={"target_groups": frozenset(g.get("TargetGroupARNs", [])),
                            "autoscaler_tags": {k: v for k, v in T.to_dict(g.get("Tags")).items() if k.startswith(AUTOSCALER_PREFIX)}},
                    outputs={"id": want.name, "desired": g.get("DesiredCapacity", 0)},
                )
                return self.modify(ctx, want, have, fields, set(fields))
        return {"id": want.name, "desired": fields["min_size"]}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        asg = ctx.clients.client("autoscaling")
        desired = int(have.outputs.get("desired", fields["min_size"]))
        clamped = min(max(desired, fields["min_size"]), fields["max_size"])
        have_tgs: frozenset[str] = have.fields.get("target_groups", frozenset())
        add = sorted(fields["target_groups"] - have_tgs) if "target_groups" in changed else []
        remove = sorted(have_tgs - fields["target_groups"]) if "target_groups" in changed else []
        tag_changes = "autoscaler_tags" in changed
        have_tags: dict[str, str] = have.fields.get("autoscaler_tags", {})
        want_tags: dict[str, str] = fields.get("autoscaler_tags", {})
        with aws_errors(f"updating Auto Scaling group {want.name}"):
            # Stale target groups first: one deleted behind our back makes every later call on
            # the group fail; detaching a group that no longer exists counts as done.
            if remove:
                tolerate(lambda: asg.detach_load_balancer_target_groups(AutoScalingGroupName=want.name, TargetGroupARNs=remove),
                         "TargetGroupNotFound")
            if tag_changes and want_tags != have_tags:
                put = {k: v for k, v in want_tags.items() if have_tags.get(k) != v}
                gone = {k: v for k, v in have_tags.items() if k not in want_tags}
                if put:
                    asg.create_or_update_tags(Tags=_asg_tags(want.name, put, propagate=False))
                if gone:
                    asg.delete_tags(Tags=_asg_tags(want.name, gone, propagate=False))
            if changed - {"target_groups", "autoscaler_tags"}:
                kwargs: dict[str, Any] = {
                    "AutoScalingGroupName": want.name,
                    "LaunchTemplate": {"LaunchTemplateName": fields["launch_template"], "Version": fields["launch_template_version"]},
                    "MinSize": fields["min_size"],
                    "MaxSize": fields["max_size"],
                    "VPCZoneIdentifier": ",".join(sorted(fields["subnets"])),
                }
                if clamped != desired:
                    kwargs["DesiredCapacity"] = clamped
                retry(lambda: asg.update_auto_scaling_group(**kwargs), when=is_iam_propagation, timeout=ctx.retry_timeout)
            if add:
                asg.attach_load_balancer_target_groups(AutoScalingGroupName=want.name, TargetGroupARNs=add)
        return {"id": want.name, "desired": clamped}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        """Force-delete (terminating its instances) and wait, bounded, until the group is gone:
        AWS deletes asynchronously, and subnets and groups cannot go while its instances run."""
        asg = ctx.clients.client("autoscaling")
        with aws_errors(f"deleting Auto Scaling group {have.name}"):
            try:
                asg.delete_auto_scaling_group(AutoScalingGroupName=have.id, ForceDelete=True)
            except Exception as exc:
                text = str(exc).lower()
                if error_code(exc) == "ValidationError" and "not found" in text:
                    return
                if not (error_code(exc) in ("ScalingActivityInProgress", "ResourceInUse") or "being deleted" in text):
                    raise

            def gone() -> None:
                if asg.describe_auto_scaling_groups(AutoScalingGroupNames=[have.id])["AutoScalingGroups"]:
                    raise NotYet(f"Auto Scaling group {have.id} is still being deleted")

            wait_until(gone, timeout=ctx.retry_timeout, first_delay=2.0)

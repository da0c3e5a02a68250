"""Network load balancers with their TCP target groups (6443) and listeners (443): kopsy's two
API load balancers (internet-facing for admins, internal for the cluster's own instances).

ELBv2 has no tag filter on describe, so discovery lists load balancers and target groups and
reads their tags in batches of 20 (``DescribeTags``); only resources carrying the cluster's
ownership tag count. AWS names are at most 32 characters: derived from the cluster name with
a hash suffix when too long, so they stay deterministic and unique.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.idempotency import create_or_adopt, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.names import elb_name
from kopsy.cloud.aws.session import aws_errors
from kopsy.parallel import parallel
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts

_T = TypeVar("_T")

API_PORT = 6443
LISTENER_PORT = 443


def _all_elbv2(facts: Facts, operation: str, result_key: str) -> list[dict[str, Any]]:
    elb = facts.clients.client("elbv2")
    return facts.once(f"elbv2.{operation}", lambda: describe_all(elb, operation, result_key))  # type: ignore[no-any-return]


def _elbv2_tags(facts: Facts) -> dict[str, dict[str, str]]:
    """Tags of every load balancer and target group, read together in batches of 20 ARNs
    (DescribeTags takes both kinds at once: one call for a usual account, not one per kind)."""
    elb = facts.clients.client("elbv2")

    def fetch() -> dict[str, dict[str, str]]:
        lbs, tgs = parallel(
            lambda args: _all_elbv2(facts, *args),
            [("describe_load_balancers", "LoadBalancers"), ("describe_target_groups", "TargetGroups")],
        )
        arns = [i["LoadBalancerArn"] for i in lbs] + [i["TargetGroupArn"] for i in tgs]
        tags: dict[str, dict[str, str]] = {}
        for start in range(0, len(arns), 20):
            for d in elb.describe_tags(ResourceArns=arns[start : start + 20]).get("TagDescriptions", []):
                tags[d["ResourceArn"]] = T.to_dict(d.get("Tags"))
        return tags

    return facts.once("elbv2.tags", fetch)  # type: ignore[no-any-return]


def _owned_elbv2(facts: Facts, operation: str, result_key: str, arn_key: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """The items of ``operation`` carrying the cluster's ownership tag, with their tags."""
    tags = _elbv2_tags(facts)
    items = _all_elbv2(facts, operation, result_key)
    ours = T.belongs if facts.sweep else T.is_owned  # delete also sweeps the KubernetesCluster scheme
    return [(i, tags.get(i[arn_key], {})) for i in items if ours(tags.get(i[arn_key], {}), facts.cluster)]


def _owned_with_detail(
    facts: Facts, operation: str, result_key: str, arn_key: str, name_key: str, expected: tuple[str, ...], detail: Callable[[str], _T]
) -> tuple[list[tuple[dict[str, Any], dict[str, str]]], dict[str, _T]]:
    """The owned items of ``operation`` with their tags, and ``detail(arn)`` of each. The items
    named in ``expected`` (kopsy's own) have their detail read while the tags are: ownership needs a
    second round trip anyway (DescribeTags), so the detail costs none. Any other owned item's
    detail is read afterwards."""
    named = [i[arn_key] for i in _all_elbv2(facts, operation, result_key) if i[name_key] in expected]
    results = parallel(
        lambda f: f(),
        [lambda: _owned_elbv2(facts, operation, result_key, arn_key)] + [lambda arn=arn: detail(arn) for arn in named],
    )
    owned, details = results[0], dict(zip(named, results[1:]))
    for item, _ in owned:
        if item[arn_key] not in details:
            details[item[arn_key]] = detail(item[arn_key])
    return owned, details


def _with_tags(elb: Any, item: dict[str, Any], arn_key: str) -> tuple[dict[str, Any], dict[str, str]]:
    """An ELBv2 item found by name, with its tags (for ``create_or_adopt``)."""
    found = elb.describe_tags(ResourceArns=[item[arn_key]]).get("TagDescriptions", [])
    return item, T.to_dict(found[0].get("Tags")) if found else {}


class LoadBalancer(Kind):
    kind = "LoadBalancer"
    service = "elasticloadbalancing"
    id_field = "LoadBalancerArn"
    depends_on = ("Subnet", "SecurityGroup", "InternetGateway")
    immutable = ("lb_name", "scheme", "type")
    permissions = (
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:SetSubnets",
        "elasticloadbalancing:SetSecurityGroups",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:DeleteLoadBalancer",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading load balancers"):
            attrs: dict[str, dict[str, str]] = {}
            if not facts.detail:  # delete needs only ids: no attribute reads
                lbs = _owned_elbv2(facts, "describe_load_balancers", "LoadBalancers", "LoadBalancerArn")
            else:  # kopsy's own load balancers' attributes are read while the tags are
                lbs, attrs = _owned_with_detail(
                    facts, "describe_load_balancers", "LoadBalancers", "LoadBalancerArn", "LoadBalancerName",
                    (elb_name("api", facts.cluster), elb_name("api-int", facts.cluster)), lambda arn: _lb_attributes(facts, arn),
                )
        return [
            Actual(
                self.kind,
                tags.get("Name", lb["LoadBalancerName"]),
                lb["LoadBalancerArn"],
                fields={
                    "lb_name": lb["LoadBalancerName"],
                    "scheme": lb.get("Scheme"),
                    "type": lb.get("Type"),
                    "subnets": frozenset(z["SubnetId"] for z in lb.get("AvailabilityZones", [])),
                    "security_groups": frozenset(lb.get("SecurityGroups", [])),
                    "cross_zone": attrs.get(lb["LoadBalancerArn"], {}).get(CROSS_ZONE, "false") == "true",
                },
                outputs={"id": lb["LoadBalancerArn"], "arn": lb["LoadBalancerArn"], "dns": lb["DNSName"]},
                tags=tags,
            )
            for lb, tags in lbs
        ]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        elb = ctx.clients.client("elbv2")
        with aws_errors(f"creating load balancer {fields['lb_name']}"):
            # ELB names are per account and region, and two cluster names can map to one
            # (``a.b.com`` and ``a-b.com``): a taken name is adopted only if the cluster's.
            lb, _ = create_or_adopt(
                lambda: elb.create_load_balancer(
                    Name=fields["lb_name"],
                    Subnets=sorted(fields["subnets"]),
                    SecurityGroups=sorted(fields["security_groups"]),
                    Scheme=fields["scheme"],
                    Type=fields["type"],
                    Tags=T.to_list(want.tags),
                )["LoadBalancers"][0],
                ("DuplicateLoadBalancerName",),
                lambda: _with_tags(elb, elb.describe_load_balancers(Names=[fields["lb_name"]])["LoadBalancers"][0], "LoadBalancerArn"),
                what="load balancer", name=fields["lb_name"], cluster=ctx.cluster,
            )
        if fields.get("cross_zone"):
            # Nothing waits for this setting: it goes out as a follow-up, off the critical path.
            def cross_zone() -> None:
                with aws_errors(f"turning on cross-zone load balancing for {fields['lb_name']}"):
                    _set_cross_zone(elb, lb["LoadBalancerArn"], True)

            ctx.follow_up(want.key, cross_zone)
        return {"id": lb["LoadBalancerArn"], "arn": lb["LoadBalancerArn"], "dns": lb["DNSName"]}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        elb = ctx.clients.client("elbv2")
        with aws_errors(f"updating load balancer {fields['lb_name']}"):
            if "subnets" in changed:
                elb.set_subnets(LoadBalancerArn=have.id, Subnets=sorted(fields["subnets"]))
            if "security_groups" in changed:
                elb.set_security_groups(LoadBalancerArn=have.id, SecurityGroups=sorted(fields["security_groups"]))
            if "cross_zone" in changed:
                _set_cross_zone(elb, have.id, fields["cross_zone"])
        return dict(have.outputs)

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        elb = ctx.clients.client("elbv2")
        with aws_errors(f"deleting load balancer {have.name}"):
            tolerate(lambda: elb.delete_load_balancer(LoadBalancerArn=have.id), "LoadBalancerNotFound")
            # Deletion is asynchronous: wait (bounded) so its network interfaces release the SG and subnets.
            delay = 5
            elb.get_waiter("load_balancers_deleted").wait(
                LoadBalancerArns=[have.id],
                WaiterConfig={"Delay": delay, "MaxAttempts": max(1, int(ctx.retry_timeout // delay))},
            )


class TargetGroup(Kind):
    kind = "TargetGroup"
    service = "elasticloadbalancing"
    id_field = "TargetGroupArn"
    depends_on = ("VPC",)
    delete_after = ("LoadBalancer",)  # its listeners, which use it, go with their load balancer
    immutable = ("tg_name", "protocol", "port", "vpc")
    permissions = (
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:DeleteTargetGroup",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading target groups"):
            attrs: dict[str, dict[str, Any]] = {}
            if not facts.detail:  # delete needs only ids: no attribute reads
                tgs = _owned_elbv2(facts, "describe_target_groups", "TargetGroups", "TargetGroupArn")
            else:  # one attribute read per target group of kopsy's
                tgs, attrs = _owned_with_detail(
                    facts, "describe_target_groups", "TargetGroups", "TargetGroupArn", "TargetGroupName",
                    (elb_name("tcp", facts.cluster), elb_name("tcp-int", facts.cluster)), lambda arn: _tg_attributes(facts, arn),
                )
        return [
            Actual(
                self.kind,
                tags.get("Name", tg["TargetGroupName"]),
                tg["TargetGroupArn"],
                fields={
                    "tg_name": tg["TargetGroupName"],
                    "protocol": tg.get("Protocol"),
                    "port": tg.get("Port"),
                    "vpc": tg.get("VpcId"),
                    "health_check": tg.get("HealthCheckProtocol"),
                    "health_check_interval": tg.get("HealthCheckIntervalSeconds"),
                    "healthy_threshold": tg.get("HealthyThresholdCount"),
                    "unhealthy_threshold": tg.get("UnhealthyThresholdCount"),
                    **attrs.get(tg["TargetGroupArn"], _parse_tg_attributes([])),
                },
                outputs={"id": tg["TargetGroupArn"], "arn": tg["TargetGroupArn"]},
                tags=tags,
            )
            for tg, tags in tgs
        ]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        elb = ctx.clients.client("elbv2")
        with aws_errors(f"creating target group {fields['tg_name']}"):
            tg, _ = create_or_adopt(
                lambda: elb.create_target_group(
                    Name=fields["tg_name"],
                    Protocol=fields["protocol"],
                    Port=fields["port"],
                    VpcId=fields["vpc"],
                    TargetType="instance",
                    **_health_check(fields),
                    Tags=T.to_list(want.tags),
                )["TargetGroups"][0],
                ("DuplicateTargetGroupName",),
                lambda: _with_tags(elb, elb.describe_target_groups(Names=[fields["tg_name"]])["TargetGroups"][0], "TargetGroupArn"),
                what="target group", name=fields["tg_name"], cluster=ctx.cluster,
            )
            _set_tg_attributes(elb, tg["TargetGroupArn"], fields, set(TG_ATTRIBUTES))
        return {"id": tg["TargetGroupArn"], "arn": tg["TargetGroupArn"]}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        elb = ctx.clients.client("elbv2")
        with aws_errors(f"updating target group {fields['tg_name']}"):
            if changed & set(HEALTH_CHECK):
                elb.modify_target_group(TargetGroupArn=have.id, **_health_check(fields))
            if changed & set(TG_ATTRIBUTES):
                _set_tg_attributes(elb, have.id, fields, changed)
        return dict(have.outputs)

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting target group {have.name}"):
            tolerate(lambda: ctx.clients.client("elbv2").delete_target_group(TargetGroupArn=have.id), "TargetGroupNotFound")


# The target-group settings kopsy sets, as kops does: field -> its CreateTargetGroup parameter.
HEALTH_CHECK = {
    "health_check": "HealthCheckProtocol",
    "health_check_interval": "HealthCheckIntervalSeconds",
    "healthy_threshold": "HealthyThresholdCount",
    "unhealthy_threshold": "UnhealthyThresholdCount",
}
# ... and field -> (attribute key, AWS's value when the attribute is absent, for instance targets).
TG_ATTRIBUTES: dict[str, tuple[str, Any]] = {
    # With client IPs preserved, an NLB drops a target's connection to itself (hairpin), and
    # kubeadm on a control plane reaches its own API through the load balancer: kopsy turns it off.
    "preserve_client_ip": ("preserve_client_ip.enabled", True),
    "deregistration_delay": ("deregistration_delay.timeout_seconds", 300),
    "connection_termination": ("deregistration_delay.connection_termination.enabled", False),
}
CROSS_ZONE = "load_balancing.cross_zone.enabled"


def _health_check(fields: dict[str, Any]) -> dict[str, Any]:
    return {param: fields[f] for f, param in HEALTH_CHECK.items() if f in fields}


def _parse_tg_attributes(attrs: list[dict[str, str]]) -> dict[str, Any]:
    """The settings kopsy manages from a DescribeTargetGroupAttributes answer (pure)."""
    raw = {a["Key"]: a["Value"] for a in attrs}
    out: dict[str, Any] = {}
    for f, (key, default) in TG_ATTRIBUTES.items():
        text = raw.get(key)
        out[f] = default if text is None else (text == "true" if isinstance(default, bool) else int(text))
    return out


def _tg_attributes(facts: Facts, arn: str) -> dict[str, Any]:
    return _parse_tg_attributes(facts.clients.client("elbv2").describe_target_group_attributes(TargetGroupArn=arn)["Attributes"])


def _set_tg_attributes(elb: Any, arn: str, fields: dict[str, Any], which: set[str]) -> None:
    """One call for every managed attribute in ``which`` that ``fields`` sets."""
    attrs = [{"Key": key, "Value": (str(fields[f]).lower() if isinstance(fields[f], bool) else str(fields[f]))}
             for f, (key, _) in TG_ATTRIBUTES.items() if f in which and f in fields]
    if attrs:
        elb.modify_target_group_attributes(TargetGroupArn=arn, Attributes=attrs)


def _lb_attributes(facts: Facts, arn: str) -> dict[str, str]:
    attrs = facts.clients.client("elbv2").describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    return {a["Key"]: a["Value"] for a in attrs}


def _set_cross_zone(elb: Any, arn: str, enabled: bool) -> None:
    elb.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=[{"Key": CROSS_ZONE, "Value": "true" if enabled else "false"}])


class Listener(Kind):
    kind = "Listener"
    service = "elasticloadbalancing"
    id_field = "ListenerArn"
    depends_on = ("LoadBalancer", "TargetGroup")
    immutable = ("load_balancer",)
    permissions = (
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DeleteListener",
    )

    def goes_with(self, have: Actual, deleting: Mapping[str, Actual]) -> bool:
        """AWS deletes a load balancer's listeners with it."""
        return have.fields.get("load_balancer") in deleting

    def find(self, facts: Facts) -> list[Actual]:
        elb = facts.clients.client("elbv2")

        def listeners(arn: str) -> list[dict[str, Any]]:
            return describe_all(elb, "describe_listeners", "Listeners", LoadBalancerArn=arn)

        with aws_errors("reading listeners"):
            owned_lbs, by_arn = _owned_with_detail(
                facts, "describe_load_balancers", "LoadBalancers", "LoadBalancerArn", "LoadBalancerName",
                (elb_name("api", facts.cluster), elb_name("api-int", facts.cluster)), listeners,
            )
            out = []
            for lb, tags in owned_lbs:
                arn = lb["LoadBalancerArn"]
                for ls in by_arn[arn]:
                    forward = [a.get("TargetGroupArn") for a in ls.get("DefaultActions", []) if a.get("Type") == "forward"]
                    out.append(
                        Actual(
                            self.kind,
                            f"{tags.get('Name', lb['LoadBalancerName'])}:{ls['Port']}",
                            ls["ListenerArn"],
                            fields={
                                "load_balancer": arn,
                                "port": ls["Port"],
                                "protocol": ls.get("Protocol"),
                                "target_group": forward[0] if forward else None,
                            },
                            outputs={"id": ls["ListenerArn"]},
                            tags=tags,
                        )
                    )
        return out

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        elb = ctx.clients.client("elbv2")
        with aws_errors(f"creating listener {want.name}"):
            # A listener lives on kopsy's own load balancer: a duplicate is a repeat of ours.
            ls = tolerate(lambda: elb.create_listener(
                LoadBalancerArn=fields["load_balancer"],
                Protocol=fields["protocol"],
                Port=fields["port"],
                DefaultActions=[{"Type": "forward", "TargetGroupArn": fields["target_group"]}],
            )["Listeners"][0], "DuplicateListener") or next(
                x for x in elb.describe_listeners(LoadBalancerArn=fields["load_balancer"])["Listeners"] if x["Port"] == fields["port"]
            )
        return {"id": ls["ListenerArn"]}

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        with aws_errors(f"updating listener {want.name}"):
            ctx.clients.client("elbv2").modify_listener(
                ListenerArn=have.id,
                Protocol=fields["protocol"],
                Port=fields["port"],
                DefaultActions=[{"Type": "forward", "TargetGroupArn": fields["target_group"]}],
            )
        return dict(have.outputs)

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting listener {have.name}"):
            tolerate(lambda: ctx.clients.client("elbv2").delete_listener(ListenerArn=have.id), "ListenerNotFound")

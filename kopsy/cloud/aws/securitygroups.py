"""Security groups and their rules, with the rule set kops uses.

Groups and rules are separate kinds because rules reference other groups: every group must
exist before any rule can name it, and on delete every cross-group rule must be revoked
before any group can go. Both kinds read the same ``DescribeSecurityGroups`` answer.

A rule is a tuple ``(protocol, from_port, to_port, source)``; ``source`` is a CIDR or a group id.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import name_of, owned
from kopsy.cloud.aws.idempotency import create_or_adopt, tolerate
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.names import security_group_name
from kopsy.cloud.aws.session import aws_errors
from kopsy.reconcile.values import Actual, ApplyContext, Desired, Facts, Ref

Rule = tuple[str, Any, Any, Any]  # source: CIDR string, group id, or a Ref to a group
ALL_EGRESS: Rule = ("-1", None, None, "0.0.0.0/0")


def kops_rules(cluster: str, ssh_access: list[str], api_access: list[str], *, bastion: bool = False) -> dict[str, frozenset[Rule]]:
    """Ingress rules per group role ('control-plane', 'nodes', 'api-elb', 'api-internal', and
    'bastion' when there is one), as kops sets them up. With a bastion, only the bastion admits
    SSH from ``ssh_access``; the cluster's instances admit SSH from the bastion's group alone. ``api_access`` restricts only the internet-facing load balancer: the cluster's
    own instances reach the API through the internal one, which admits their groups (traffic to
    an internet-facing load balancer arrives from public addresses, which group references never
    match, so restricting it must not cut the cluster off from its own API)."""
    cp = Ref("SecurityGroup", security_group_name("control-plane", cluster))
    nodes = Ref("SecurityGroup", security_group_name("nodes", cluster))
    elb = Ref("SecurityGroup", security_group_name("api-elb", cluster))
    internal = Ref("SecurityGroup", security_group_name("api-internal", cluster))
    # Path-MTU discovery: ICMP "fragmentation needed" (type 3, code 4) from whoever may connect,
    # or large replies to them black-hole (kops adds these too).
    from_access = {("tcp", 22, 22, c) for c in ssh_access} | {("icmp", 3, 4, c) for c in ssh_access}
    jump = Ref("SecurityGroup", security_group_name("bastion", cluster))
    ssh = {("tcp", 22, 22, jump)} if bastion else from_access
    extra = {"bastion": frozenset(from_access)} if bastion else {}
    return extra | {
        "control-plane": frozenset(
            ssh
            | {
                ("-1", None, None, cp),  # control plane <-> control plane
                ("tcp", 6443, 6443, elb),  # load balancer (and its health checks) -> API server
                ("tcp", 6443, 6443, internal),  # the internal load balancer, likewise
                # nodes -> control plane: everything but etcd (2379-2381)
                ("tcp", 1, 2378, nodes),
                ("tcp", 2382, 65535, nodes),
                ("udp", 1, 65535, nodes),
                ("4", None, None, nodes),  # IP-in-IP (Calico)
            }
        ),
        "nodes": frozenset(
            ssh
            | {
                ("-1", None, None, cp),  # control plane -> nodes (kubelet 10250 included)
                ("-1", None, None, nodes),  # nodes <-> nodes
            }
        ),
        "api-elb": frozenset({("tcp", 443, 443, c) for c in api_access} | {("icmp", 3, 4, c) for c in api_access}),
        "api-internal": frozenset({("tcp", 443, 443, cp), ("tcp", 443, 443, nodes)}),
    }


def rule_mark(cluster: str) -> str:
    """The description kopsy gives every rule it adds, so that it can tell its own rules from
    those others add to its groups (the cloud-controller-manager's NodePort and health-check
    rules, a user's): kopsy revokes only its own."""
    return f"{T.TAG_CLUSTER}={cluster}"


def _described_rules(perms: list[dict[str, Any]]) -> frozenset[tuple[Rule, str]]:
    """Every rule of a described permission list, with its description ("" for none)."""
    out: set[tuple[Rule, str]] = set()
    for p in perms:
        proto = str(p.get("IpProtocol", "-1"))
        if proto in ("-1", "4", "all"):
            lo: Any = None
            hi: Any = None
            proto = "-1" if proto == "all" else proto
        else:
            lo, hi = p.get("FromPort"), p.get("ToPort")
        for r in p.get("IpRanges", []):
            out.add(((proto, lo, hi, r["CidrIp"]), r.get("Description", "")))
        for g in p.get("UserIdGroupPairs", []):
            out.add(((proto, lo, hi, g["GroupId"]), g.get("Description", "")))
    return frozenset(out)


def _rule_fields(g: dict[str, Any], cluster: str) -> dict[str, frozenset[Any]]:
    """A group's rules, by whose they are: ``ingress``/``egress`` are kopsy's (marked),
    ``*_unmarked`` have no description (AWS's default egress, rules an older kopsy added, or a
    user's), ``*_all`` is every rule with its description (what ``delete`` revokes; a revoke
    names the description, which moto, unlike AWS, requires to match)."""
    out: dict[str, frozenset[Any]] = {}
    for direction, key in (("ingress", "IpPermissions"), ("egress", "IpPermissionsEgress")):
        described = _described_rules(g.get(key, []))
        out[direction] = frozenset(r for r, d in described if d == rule_mark(cluster))
        out[f"{direction}_unmarked"] = frozenset(r for r, d in described if not d)
        out[f"{direction}_all"] = described
    return out


def _is_group(rule: Rule) -> bool:
    """The rule's source is a security group (not a CIDR)."""
    return "/" not in str(rule[3])


def _permission(rule: Rule, description: str = "") -> dict[str, Any]:
    proto, lo, hi, src = rule
    entry = {"Description": description} if description else {}
    perm: dict[str, Any] = {"IpProtocol": proto}
    if lo is not None:
        perm["FromPort"], perm["ToPort"] = lo, hi
    elif proto != "-1":  # e.g. IP-in-IP: no ports, but some endpoints insist on the fields
        perm["FromPort"], perm["ToPort"] = -1, -1
    if not _is_group(rule):
        perm["IpRanges"] = [{"CidrIp": src, **entry}]
    else:
        perm["UserIdGroupPairs"] = [{"GroupId": src, **entry}]
    return perm


class SecurityGroup(Kind):
    kind = "SecurityGroup"
    service = "ec2"
    id_field = "GroupId"
    depends_on = ("VPC",)
    # Instances and load balancers depend on their groups; a template only names them (soft),
    # so its Auto Scaling group's instances have to be gone before a group can be deleted.
    delete_after = ("NetworkInterface", "AutoScalingGroup")
    immutable = ("vpc", "description")
    permissions = (
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:CreateTags",
        "ec2:DeleteSecurityGroup",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading security groups"):
            groups = owned(facts, "describe_security_groups", "SecurityGroups", id_key="GroupId")
        return [
            Actual(
                self.kind,
                name_of(g, g["GroupName"]),
                g["GroupId"],
                fields={"vpc": g.get("VpcId"), "description": g.get("Description", "")},
                outputs={"id": g["GroupId"]},
                tags=T.to_dict(g.get("Tags")),
            )
            for g in groups
        ]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"creating security group {want.name}"):
            def existing() -> tuple[str, dict[str, str]]:
                found = ec2.describe_security_groups(
                    Filters=[{"Name": "vpc-id", "Values": [fields["vpc"]]}, {"Name": "group-name", "Values": [want.name]}]
                )["SecurityGroups"][0]
                return found["GroupId"], T.to_dict(found.get("Tags"))

            gid, _ = create_or_adopt(
                lambda: ec2.create_security_group(
                    GroupName=want.name,
                    Description=fields["description"],
                    VpcId=fields["vpc"],
                    TagSpecifications=T.tag_spec("security-group", want.tags),
                )["GroupId"],
                ("InvalidGroup.Duplicate",), existing, what="security group", name=want.name, cluster=ctx.cluster,
            )
        return {"id": gid}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting security group {have.name} ({have.id})"):
            tolerate(lambda: ctx.clients.client("ec2").delete_security_group(GroupId=have.id), "InvalidGroup.NotFound")


class SecurityGroupRules(Kind):
    """The ingress/egress rules of one group (``name`` is the group's name)."""

    kind = "SecurityGroupRules"
    service = "ec2"
    id_field = "GroupId"
    depends_on = ("SecurityGroup",)
    permissions = (
        "ec2:DescribeSecurityGroups",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading security groups"):
            groups = owned(facts, "describe_security_groups", "SecurityGroups", id_key="GroupId")
        return [
            Actual(
                self.kind,
                name_of(g, g["GroupName"]),
                g["GroupId"],
                fields={"group": g["GroupId"], **_rule_fields(g, facts.cluster)},
                outputs={"id": g["GroupId"]},
                tags=T.to_dict(g.get("Tags")),
            )
            for g in groups
        ]

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        # The group is new (or was just found): read its current rules (AWS adds a default egress).
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"reading security group {want.name}"):
            g = ec2.describe_security_groups(GroupIds=[fields["group"]])["SecurityGroups"][0]
        have = Actual(self.kind, want.name, fields["group"], fields=_rule_fields(g, ctx.cluster))
        return self.modify(ctx, want, have, fields, {"ingress", "egress"})

    def same(self, field_name: str, desired: Any, have: Actual) -> bool:
        """Up to date when kopsy's own rules are the wanted ones, counting a wanted rule that is
        there without a description (AWS's default egress, or added by an older kopsy) as
        present. Rules others added are not compared: they are not kopsy's to revoke."""
        if field_name in ("ingress", "egress"):
            return bool(desired == _present(have, field_name, desired))
        return super().same(field_name, desired, have)

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        gid = have.id
        with aws_errors(f"updating rules of security group {want.name}"):
            for direction in ("ingress", "egress"):
                want_rules: frozenset[Rule] = fields[direction]
                mine: frozenset[Rule] = have.fields.get(direction, frozenset())
                add = sorted(want_rules - _present(have, direction, want_rules), key=str)
                remove = sorted(mine - want_rules, key=str)  # only kopsy's own: never a rule others added
                auth = ec2.authorize_security_group_ingress if direction == "ingress" else ec2.authorize_security_group_egress
                revoke = ec2.revoke_security_group_ingress if direction == "ingress" else ec2.revoke_security_group_egress
                mark = rule_mark(ctx.cluster)
                if add and tolerate(lambda: auth(GroupId=gid, IpPermissions=[_permission(r, mark) for r in add]),
                                    "InvalidPermission.Duplicate") is None:
                    for r in add:  # some were there already (a rerun after a crash): one by one
                        tolerate(partial(auth, GroupId=gid, IpPermissions=[_permission(r, mark)]), "InvalidPermission.Duplicate")
                if remove:
                    revoke(GroupId=gid, IpPermissions=[_permission(r, mark) for r in remove])
        return {"id": gid}

    def needs_delete(self, have: Actual) -> bool:
        """Only rule sets that reference other groups: those rules must be revoked before the
        groups can be deleted; CIDR rules go with their group."""
        return any(_is_group(r) for d in ("ingress_all", "egress_all") for r, _ in have.fields.get(d, ()))

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        """Revoke only rules that name *other groups*, so every group can then be deleted."""
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"revoking cross-group rules of {have.name}"):
            for direction in ("ingress", "egress"):
                refs = [(r, desc) for r, desc in have.fields.get(f"{direction}_all", frozenset()) if _is_group(r)]
                if not refs:
                    continue
                revoke = ec2.revoke_security_group_ingress if direction == "ingress" else ec2.revoke_security_group_egress
                tolerate(partial(revoke, GroupId=have.id, IpPermissions=[_permission(r, desc) for r, desc in refs]),
                         "InvalidGroup.NotFound", "InvalidPermission.NotFound")


def _present(have: Actual, direction: str, wanted: frozenset[Rule]) -> frozenset[Rule]:
    """kopsy's own rules in ``direction``, plus the wanted ones present without a description."""
    mine: frozenset[Rule] = have.fields.get(direction, frozenset())
    unmarked: frozenset[Rule] = have.fields.get(f"{direction}_unmarked", frozenset())
    return mine | (unmarked & wanted)

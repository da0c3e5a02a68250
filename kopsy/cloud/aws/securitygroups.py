"""Security groups and their rules, with the rule set kops uses.

Groups and rules are separate kinds because rules reference other groups: every group must
exist before any rule can name it, and on delete every cross-group rule must be revoked
before any group can go. Both kinds read the same ``DescribeSecurityGroups`` answer.

A rule is a tuple ``(protocol, from_port, to_port, source)``; ``source`` is a CIDR or a group id.
"""

from __future__ import annotations

from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import name_of, owned
from kopsy.cloud.aws.kind import Actual, ApplyContext, Desired, Facts, Kind, Ref
from kopsy.cloud.aws.names import security_group_name
from kopsy.cloud.aws.session import aws_errors, error_code

Rule = tuple[str, Any, Any, Any]  # source: CIDR string, group id, or a Ref to a group
ALL_EGRESS: Rule = ("-1", None, None, "0.0.0.0/0")


def kops_rules(cluster: str, ssh_access: list[str], api_access: list[str]) -> dict[str, frozenset[Rule]]:
    """Ingress rules per group role ('control-plane', 'nodes', 'api-elb'), as kops sets them up."""
    cp = Ref("SecurityGroup", security_group_name("control-plane", cluster))
    nodes = Ref("SecurityGroup", security_group_name("nodes", cluster))
    elb = Ref("SecurityGroup", security_group_name("api-elb", cluster))
    ssh = {("tcp", 22, 22, c) for c in ssh_access}
    return {
        "control-plane": frozenset(
            ssh
            | {
                ("-1", None, None, cp),  # control plane <-> control plane
                ("tcp", 6443, 6443, elb),  # load balancer (and its health checks) -> API server
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
        "api-elb": frozenset({("tcp", 443, 443, c) for c in api_access}),
    }


def _rules(perms: list[dict[str, Any]]) -> frozenset[Rule]:
    out: set[Rule] = set()
    for p in perms:
        proto = str(p.get("IpProtocol", "-1"))
        if proto in ("-1", "4", "all"):
            lo: Any = None
            hi: Any = None
            proto = "-1" if proto == "all" else proto
        else:
            lo, hi = p.get("FromPort"), p.get("ToPort")
        for r in p.get("IpRanges", []):
            out.add((proto, lo, hi, r["CidrIp"]))
        for g in p.get("UserIdGroupPairs", []):
            out.add((proto, lo, hi, g["GroupId"]))
    return frozenset(out)


def _permission(rule: Rule) -> dict[str, Any]:
    proto, lo, hi, src = rule
    perm: dict[str, Any] = {"IpProtocol": proto}
    if lo is not None:
        perm["FromPort"], perm["ToPort"] = lo, hi
    elif proto != "-1":  # e.g. IP-in-IP: no ports, but some endpoints insist on the fields
        perm["FromPort"], perm["ToPort"] = -1, -1
    if "/" in str(src):
        perm["IpRanges"] = [{"CidrIp": src}]
    else:
        perm["UserIdGroupPairs"] = [{"GroupId": src}]
    return perm


class SecurityGroup(Kind):
    kind = "SecurityGroup"
    service = "ec2"
    id_field = "GroupId"
    depends_on = ("VPC",)
    delete_after = ("Instance", "LoadBalancer", "NetworkInterface", "AutoScalingGroup")
    immutable = ("vpc", "description")
    permissions = (
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:CreateTags",
        "ec2:DeleteSecurityGroup",
    )

    def find(self, facts: Facts) -> list[Actual]:
        with aws_errors("reading security groups"):
            groups = owned(facts, "describe_security_groups", "SecurityGroups")
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
            try:
                gid = ec2.create_security_group(
                    GroupName=want.name,
                    Description=fields["description"],
                    VpcId=fields["vpc"],
                    TagSpecifications=T.tag_spec("security-group", want.tags),
                )["GroupId"]
            except Exception as exc:
                if error_code(exc) != "InvalidGroup.Duplicate":
                    raise
                found = ec2.describe_security_groups(
                    Filters=[{"Name": "vpc-id", "Values": [fields["vpc"]]}, {"Name": "group-name", "Values": [want.name]}]
                )["SecurityGroups"]
                gid = found[0]["GroupId"]
        return {"id": gid}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        with aws_errors(f"deleting security group {have.name} ({have.id})"):
            try:
                ctx.clients.client("ec2").delete_security_group(GroupId=have.id)
            except Exception as exc:
                if error_code(exc) != "InvalidGroup.NotFound":
                    raise


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
            groups = owned(facts, "describe_security_groups", "SecurityGroups")
        return [
            Actual(
                self.kind,
                name_of(g, g["GroupName"]),
                g["GroupId"],
                fields={
                    "group": g["GroupId"],
                    "ingress": _rules(g.get("IpPermissions", [])),
                    "egress": _rules(g.get("IpPermissionsEgress", [])),
                },
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
        have = Actual(
            self.kind,
            want.name,
            fields["group"],
            fields={"ingress": _rules(g.get("IpPermissions", [])), "egress": _rules(g.get("IpPermissionsEgress", []))},
        )
        return self.modify(ctx, want, have, fields, {"ingress", "egress"})

    def modify(self, ctx: ApplyContext, want: Desired, have: Actual, fields: dict[str, Any], changed: set[str]) -> dict[str, Any]:
        ec2 = ctx.clients.client("ec2")
        gid = have.id
        with aws_errors(f"updating rules of security group {want.name}"):
            for direction in ("ingress", "egress"):
                want_rules: frozenset[Rule] = fields[direction]
                have_rules: frozenset[Rule] = have.fields.get(direction, frozenset())
                add = sorted(want_rules - have_rules, key=str)
                remove = sorted(have_rules - want_rules, key=str)
                auth = ec2.authorize_security_group_ingress if direction == "ingress" else ec2.authorize_security_group_egress
                revoke = ec2.revoke_security_group_ingress if direction == "ingress" else ec2.revoke_security_group_egress
                if add:
                    try:
                        auth(GroupId=gid, IpPermissions=[_permission(r) for r in add])
                    except Exception as exc:
                        if error_code(exc) != "InvalidPermission.Duplicate":
                            raise
                        for r in add:  # some were there already (a rerun after a crash): one by one
                            try:
                                auth(GroupId=gid, IpPermissions=[_permission(r)])
                            except Exception as e2:
                                if error_code(e2) != "InvalidPermission.Duplicate":
                                    raise
                if remove:
                    revoke(GroupId=gid, IpPermissions=[_permission(r) for r in remove])
        return {"id": gid}

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        """Revoke only rules that name *other groups*, so every group can then be deleted."""
        ec2 = ctx.clients.client("ec2")
        with aws_errors(f"revoking cross-group rules of {have.name}"):
            for direction in ("ingress", "egress"):
                refs = [r for r in have.fields.get(direction, frozenset()) if "/" not in str(r[3])]
                if not refs:
                    continue
                revoke = ec2.revoke_security_group_ingress if direction == "ingress" else ec2.revoke_security_group_egress
                try:
                    revoke(GroupId=have.id, IpPermissions=[_permission(r) for r in refs])
                except Exception as exc:
                    if error_code(exc) not in ("InvalidGroup.NotFound", "InvalidPermission.NotFound"):
                        raise

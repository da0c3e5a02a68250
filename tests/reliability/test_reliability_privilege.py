"""Least privilege of the instance roles kopsy writes, read back from IAM and *evaluated*:
no wildcard action reaches a write API, nodes can read only what joining needs (never a CA or
service-account key), and control planes only their own cluster's prefix."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

import pytest
from reliability_support import BUCKET, CLUSTER, Baseline, Cloud

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable against moto behind the fault proxy

READ_VERBS = ("Describe", "Get", "List", "BatchGet", "BatchCheck", "Head")
NODE_MAY_READ = {"pki/ca.crt", "secrets/bootstrap-token"}
CONTROL_PLANE_MAY_READ = re.compile(r"^(pki/.*|secrets/.*|config|instancegroup/.*|addons/.*|bootstrap/.*|backups/etcd/.*)$")
CONTROL_PLANE_MAY_WRITE = {"secrets/bootstrap-token"}
SECRETS = ("pki/ca.key", "pki/front-proxy-ca.key", "pki/etcd/ca.key", "pki/sa.key")


def policies(cloud: Cloud, role: str) -> list[dict[str, Any]]:
    """Every statement that applies to ``role``: inline and attached managed policies."""
    iam = cloud.boto("iam")
    docs = [iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
            for p in iam.list_role_policies(RoleName=role)["PolicyNames"]]
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        pol = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        docs.append(iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=pol["DefaultVersionId"])["PolicyVersion"]["Document"])
    statements = []
    for doc in docs:
        st = doc["Statement"]
        statements += st if isinstance(st, list) else [st]
    return statements


def _list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _match(pattern: str, value: str, *, case: bool) -> bool:
    if not case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def allowed(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """IAM evaluation, conservatively: an Allow whose action and resource match (conditions are
    ignored, so a conditional allow counts as allowed), unless a matching Deny exists."""

    def hits(s: dict[str, Any]) -> bool:
        if "NotAction" in s:
            act = not any(_match(a, action, case=False) for a in _list(s["NotAction"]))
        else:
            act = any(_match(a, action, case=False) for a in _list(s.get("Action")))
        if "NotResource" in s:
            res = not any(_match(r, resource, case=True) for r in _list(s["NotResource"]))
        else:
            res = any(_match(r, resource, case=True) for r in _list(s.get("Resource")))
        return act and res

    if any(s["Effect"] == "Deny" and hits(s) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and hits(s) for s in statements)


@pytest.fixture(scope="module")
def roles(rel_cloud: Cloud, baseline: Baseline) -> dict[str, list[dict[str, Any]]]:
    """The statements of both instance roles after a clean update (built once for the module)."""
    rel_cloud.reset()
    rel_cloud.restore_store(baseline.store)
    r = rel_cloud.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stderr
    names = [x["RoleName"] for x in rel_cloud.boto("iam").list_roles()["Roles"]]
    assert sorted(names) == [f"control-plane.{CLUSTER}", f"nodes.{CLUSTER}"]
    return {n.split(".", 1)[0]: policies(rel_cloud, n) for n in names}


def test_no_wildcard_action_reaches_a_write_api(roles: dict[str, list[dict[str, Any]]]) -> None:
    for role, statements in roles.items():
        for s in statements:
            if s["Effect"] != "Allow":
                continue
            assert "NotAction" not in s, f"{role}: Allow with NotAction grants everything else"
            for action in _list(s.get("Action")):
                if "*" not in action and "?" not in action:
                    continue
                assert action != "*", f"{role}: Action '*'"
                verb = action.split(":", 1)[1]
                literal = re.split(r"[*?]", verb, maxsplit=1)[0]
                assert literal.startswith(READ_VERBS), f"{role}: {action} can match write APIs"


def _keys(baseline: Baseline) -> list[str]:
    """Every key of this cluster's store prefix, plus a neighbour cluster's secrets."""
    own = [k.split("/", 1)[1] for k in baseline.store if k.startswith(f"{CLUSTER}/")]
    assert set(SECRETS) <= set(own)
    return own


def _arn(key: str, cluster: str = CLUSTER) -> str:
    return f"arn:aws:s3:::{BUCKET}/{cluster}/{key}"


def test_nodes_can_read_only_what_joining_needs(roles: dict[str, list[dict[str, Any]]], baseline: Baseline) -> None:
    nodes = roles["nodes"]
    readable = {k for k in _keys(baseline) if allowed(nodes, "s3:GetObject", _arn(k))}
    assert readable == NODE_MAY_READ, f"nodes read {sorted(readable)}"
    for secret in SECRETS:
        assert not allowed(nodes, "s3:GetObject", _arn(secret))
    for action in ("s3:PutObject", "s3:DeleteObject", "s3:GetObjectVersion", "s3:ListBucket"):
        for k in _keys(baseline):
            assert not allowed(nodes, action, _arn(k)), f"nodes may {action} {k}"
    # ListBucket only for their own prefix (so a missing object is a 404): every Allow that
    # reaches the bucket carries an s3:prefix condition inside this cluster's prefix
    for s in nodes:
        if s["Effect"] == "Allow" and any(_match(a, "s3:ListBucket", case=False) for a in _list(s.get("Action"))):
            prefixes = _list(s.get("Condition", {}).get("StringLike", {}).get("s3:prefix"))
            assert prefixes and all(p == CLUSTER or p.startswith(f"{CLUSTER}/") for p in prefixes), s
    assert not allowed(nodes, "s3:GetObject", _arn("pki/ca.key", "other.example.com"))


def test_control_planes_stay_inside_their_own_cluster_prefix(roles: dict[str, list[dict[str, Any]]], baseline: Baseline) -> None:
    cp = roles["control-plane"]
    for k in _keys(baseline):
        assert allowed(cp, "s3:GetObject", _arn(k)) == bool(CONTROL_PLANE_MAY_READ.match(k)), k
        assert allowed(cp, "s3:PutObject", _arn(k)) == (k in CONTROL_PLANE_MAY_WRITE), k
        assert not allowed(cp, "s3:DeleteObject", _arn(k)), k
    for other in ("pki/ca.key", "secrets/bootstrap-token", "config"):
        assert not allowed(cp, "s3:GetObject", _arn(other, "other.example.com")), f"reads another cluster's {other}"
        assert not allowed(cp, "s3:GetObject", _arn(other, f"{CLUSTER}.staging")), "prefix without the trailing slash"
    assert not allowed(cp, "s3:PutObject", _arn("secrets/bootstrap-token", "other.example.com"))
    for iam_write in ("iam:PassRole", "iam:CreateRole", "iam:PutRolePolicy", "sts:AssumeRole"):
        assert not allowed(cp, iam_write, "arn:aws:iam::123456789012:role/anything")


def test_only_control_planes_read_the_addons_and_no_instance_writes_them(roles: dict[str, list[dict[str, Any]]]) -> None:
    """The first control plane applies the addons it fetches (docs/addons.md); an instance that
    could rewrite one could run anything as the cloud-controller-manager."""
    from kopsy.bootstrap.addons import render_addons
    from kopsy.spec.defaults import CreateOptions, new_cluster

    keys = list(render_addons(new_cluster(CreateOptions(name=CLUSTER, zones=["us-east-1a"]))[0]))
    for k in keys:
        assert allowed(roles["control-plane"], "s3:GetObject", _arn(k)), k
        assert not allowed(roles["nodes"], "s3:GetObject", _arn(k)), k
        for role in roles.values():
            assert not allowed(role, "s3:PutObject", _arn(k)) and not allowed(role, "s3:DeleteObject", _arn(k)), k
        assert not allowed(roles["control-plane"], "s3:GetObject", _arn(k, "other.example.com")), k


ETCD_BACKUP_KEYS = ("backups/etcd/2026-12-02T01:00:00Z/snapshot.db", "backups/etcd/2026-12-02T01:00:00Z/meta.json",
                    "backups/etcd/first-boot.json")


def may_list(statements: list[dict[str, Any]], prefix: str) -> bool:
    """ListBucket of the bucket with ``s3:prefix`` = ``prefix``, with StringLike prefix conditions
    evaluated (an explicit Deny wins)."""

    def hits(s: dict[str, Any]) -> bool:
        if not any(_match(a, "s3:ListBucket", case=False) for a in _list(s.get("Action"))):
            return False
        if not any(_match(r, f"arn:aws:s3:::{BUCKET}", case=True) for r in _list(s.get("Resource"))):
            return False
        like = _list(s.get("Condition", {}).get("StringLike", {}).get("s3:prefix"))
        return not s.get("Condition") or any(_match(p, prefix, case=True) for p in like)

    return not any(s["Effect"] == "Deny" and hits(s) for s in statements) and any(
        s["Effect"] == "Allow" and hits(s) for s in statements)


def test_only_control_planes_reach_their_own_etcd_backups(roles: dict[str, list[dict[str, Any]]]) -> None:
    """Snapshots hold every Secret: control planes put, get and delete (prune) their own
    cluster's backups/etcd/* and list that prefix; nodes can do none of it; no other cluster's."""
    cp, nodes = roles["control-plane"], roles["nodes"]
    for key in ETCD_BACKUP_KEYS:
        for action in ("s3:PutObject", "s3:GetObject", "s3:DeleteObject"):
            assert allowed(cp, action, _arn(key)), f"the control plane may not {action} {key}"
            assert not allowed(nodes, action, _arn(key)), f"nodes may {action} {key}"
            assert not allowed(cp, action, _arn(key, "other.example.com")), f"{action} reaches another cluster's {key}"
            assert not allowed(cp, action, _arn(key, f"{CLUSTER}.staging")), "prefix without the trailing slash"
    lists = [s for s in cp if s["Effect"] == "Allow" and any(_match(a, "s3:ListBucket", case=False) for a in _list(s.get("Action")))]
    assert lists and all(any(_match(p, f"{CLUSTER}/backups/etcd/", case=True)
                             for p in _list(s.get("Condition", {}).get("StringLike", {}).get("s3:prefix"))) for s in lists)
    assert all(p == CLUSTER or p.startswith(f"{CLUSTER}/")
               for s in lists for p in _list(s.get("Condition", {}).get("StringLike", {}).get("s3:prefix")))
    assert not may_list(nodes, f"{CLUSTER}/backups/etcd/") and may_list(cp, f"{CLUSTER}/backups/etcd/")
    assert may_list(nodes, f"{CLUSTER}/pki/")  # what a node's 404-vs-403 needs stays
    # nothing else of the store became deletable or writable by the control plane
    assert not allowed(cp, "s3:DeleteObject", _arn("pki/ca.key")) and not allowed(cp, "s3:PutObject", _arn("config"))


def test_write_apis_are_scoped_to_the_cluster(roles: dict[str, list[dict[str, Any]]]) -> None:
    unscoped = []
    for role, statements in roles.items():
        for s in statements:
            if s["Effect"] != "Allow" or s.get("Condition"):
                continue
            for action in _list(s.get("Action")):
                verb = action.split(":", 1)[1]
                if not verb.startswith(READ_VERBS) and "*" in _list(s.get("Resource")) and action != "ecr:GetAuthorizationToken":
                    unscoped.append(f"{role}: {action}")
    assert unscoped == []


# What the AWS cloud-controller-manager and the EBS CSI driver call on a control plane (their
# documented policies), beside a sample of what neither needs.
CCM_AND_CSI_CALLS = [
    "ec2:DescribeInstances", "ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress",
    "ec2:DeleteSecurityGroup", "ec2:CreateVolume", "ec2:AttachVolume", "ec2:DetachVolume", "ec2:DeleteVolume", "ec2:ModifyVolume",
    "ec2:CreateSnapshot", "ec2:DeleteSnapshot", "ec2:CreateTags",
    "elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup", "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:ConfigureHealthCheck", "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
    "elasticloadbalancing:ModifyTargetGroupAttributes", "iam:CreateServiceLinkedRole",
]
NOT_NEEDED = ["ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ModifyInstanceAttribute", "ec2:RunInstances", "iam:PassRole"]


def _conditions(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    """The conditions of every Allow that grants ``action`` (an empty one: unconditional)."""
    return [s.get("Condition", {}) for s in statements
            if s["Effect"] == "Allow" and any(_match(a, action, case=False) for a in _list(s.get("Action")))]


def test_the_control_plane_may_do_what_the_ccm_and_csi_driver_do_scoped_to_the_cluster(roles: dict[str, list[dict[str, Any]]]) -> None:
    cp = roles["control-plane"]
    for action in CCM_AND_CSI_CALLS:
        assert allowed(cp, action, "*"), f"the control plane may not {action}"
        verb = action.split(":", 1)[1]
        if verb.startswith(READ_VERBS):
            continue
        for condition in _conditions(cp, action):
            values = [v for c in condition.values() for v in (c.values() if isinstance(c, dict) else [])]
            flat = [x for v in values for x in _list(v)]
            assert CLUSTER in flat or "elasticloadbalancing.amazonaws.com" in flat, f"{action} is granted without the cluster's tag: {condition}"
    for action in NOT_NEEDED:
        assert not allowed(cp, action, "*"), f"the control plane may {action}, which nothing it runs needs"


def test_nodes_cannot_create_load_balancers_or_security_groups(roles: dict[str, list[dict[str, Any]]]) -> None:
    nodes = roles["nodes"]
    for action in ("elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup", "ec2:CreateSecurityGroup",
                   "ec2:AuthorizeSecurityGroupIngress", "ec2:CreateVolume", "ec2:AttachVolume", "iam:CreateServiceLinkedRole"):
        assert not allowed(nodes, action, "*"), f"nodes may {action}"

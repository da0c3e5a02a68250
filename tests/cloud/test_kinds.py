"""Every resource kind is declared completely: service, id field, known dependencies, and the
IAM permissions kopsy needs to manage it (which together document the operator's policy)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import kopsy.cloud.aws.kind as kind_module
from kopsy.cloud.aws.iam import policy_document
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.registry import ALL_KINDS, KINDS, required_permissions
from kopsy.cloud.aws.images import architecture
from kopsy.cloud.aws.names import elb_name, fingerprint

SERVICE_PREFIX = {"ec2": "ec2:", "iam": "iam:", "elasticloadbalancing": "elasticloadbalancing:", "autoscaling": "autoscaling:"}


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_kind_declares_itself(kind: Kind) -> None:
    assert kind.kind and kind.service and kind.id_field
    assert kind.permissions, f"{kind.kind} declares no IAM permissions"
    prefix = SERVICE_PREFIX[kind.service]
    own = [p for p in kind.permissions if p.startswith(prefix)]
    assert any(":Describe" in p or ":Get" in p for p in own), f"{kind.kind} cannot read itself"
    assert any(":Delete" in p or ":Terminate" in p or ":Revoke" in p or ":Release" in p for p in own), f"{kind.kind} cannot delete"
    for dep in kind.depends_on + kind.delete_after:
        assert dep in KINDS, f"{kind.kind} depends on unknown kind {dep}"


def test_kinds_are_listed_after_their_dependencies() -> None:
    seen: set[str] = set()
    for kind in ALL_KINDS:
        assert set(kind.depends_on) <= seen, f"{kind.kind} listed before {set(kind.depends_on) - seen}"
        seen.add(kind.kind)


# The IAM action prefix of each botocore service kopsy's kinds call (both ELB APIs share one).
PREFIX_OF = {"ec2": "ec2", "iam": "iam", "elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing",
             "autoscaling": "autoscaling", "ssm": "ssm", "s3": "s3", "kms": "kms"}
# IAM actions that are not API operations: permissions AWS checks inside another call.
# API operations whose IAM action has another name.
IAM_ACTION = {"s3:GetBucketEncryption": "s3:GetEncryptionConfiguration"}
NOT_AN_OPERATION = {
    "iam:PassRole",  # checked by CreateLaunchTemplate / RunInstances with a profile
    "s3:GetEncryptionConfiguration",  # the IAM action behind GetBucketEncryption
}
AWS_DIR = Path(kind_module.__file__).parent


def _operations() -> dict[str, dict[str, str]]:
    """botocore service name -> {snake_case operation: OperationName}."""
    import botocore.session
    from botocore import xform_name

    session = botocore.session.get_session()
    out = {}
    for service in PREFIX_OF:
        names = session.get_service_model(service).operation_names
        out[service] = {xform_name(op): op for op in names}
    return out


def _calls_in(module: Path, operations: dict[str, dict[str, str]]) -> set[str]:
    """The IAM actions a module's source calls: ``client.describe_vpcs(...)``, ``partial(ec2.create_route)``, operation names
    handed to helpers as strings (``owned(facts, "describe_vpcs", ...)``), on the services whose
    clients the module makes (``client("ec2")``). An operation several of them have counts as
    either service's action."""
    tree = ast.parse(module.read_text())
    services = {
        n.args[0].value for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "client"
        and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value in operations
    } or set(PREFIX_OF)
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}  # calls, and partial(ec2.create_route, ...)
    names |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    found = set()
    for name in names:
        actions = {f"{PREFIX_OF[s]}:{operations[s][name]}" for s in services if name in operations[s]}
        if actions:
            found.add("|".join(sorted(actions)))  # any one of them declared is enough
    return found


def test_every_aws_call_in_a_kind_module_is_declared_by_its_kinds() -> None:
    """Static, so it covers calls no moto run reaches (error paths, adoption, rare shapes);
    test_permissions_cover_calls.py checks the calls a real update and delete make."""
    operations = _operations()
    declared_all = set(required_permissions())
    by_module: dict[str, set[str]] = {}
    for k in ALL_KINDS:
        by_module.setdefault(type(k).__module__.rsplit(".", 1)[-1], set()).update(k.permissions)
    checked = 0
    for module in sorted(AWS_DIR.glob("*.py")):
        declared = by_module.get(module.stem, declared_all)  # shared helpers: any kind's permission
        for alternatives in _calls_in(module, operations):
            checked += 1
            actions = {IAM_ACTION.get(a, a) for a in alternatives.split("|")}
            assert actions & declared, f"{module.name} calls {alternatives} but its kinds do not declare it"
    assert checked > 40, checked


def test_every_declared_permission_is_a_real_aws_action() -> None:
    """A typo (``ec2:DescribeVpc``) would leave the operator's policy short of what kopsy calls."""
    operations = _operations()
    for perm in required_permissions():
        service, action = perm.split(":", 1)
        if perm in NOT_AN_OPERATION:
            continue
        apis = [s for s, prefix in PREFIX_OF.items() if prefix == service]
        assert apis, f"{perm}: unknown service prefix"
        assert any(action in operations[s].values() for s in apis), f"{perm} is not an {service} action"


def test_operator_policy_fits_one_managed_policy() -> None:
    """docs/update.md tells operators to build their policy from ``required_permissions()``: it
    must fit IAM's 6,144-character limit for a managed policy, and name PassRole (templates and
    groups hand the instance roles to EC2)."""
    import json

    perms = required_permissions()
    assert "iam:PassRole" in perms and "ec2:CreateLaunchTemplateVersion" in perms
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": perms, "Resource": "*"}]}
    assert len(json.dumps(policy, separators=(",", ":"))) <= 6144


def test_node_policy_reads_only_what_a_node_needs() -> None:
    doc = policy_document("nodes", "s3://bucket/prefix/demo.example.com")
    s3 = [s for s in doc["Statement"] if any(a.startswith("s3:") for a in s["Action"])]
    assert s3 == [
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [
                "arn:aws:s3:::bucket/prefix/demo.example.com/pki/ca.crt",
                "arn:aws:s3:::bucket/prefix/demo.example.com/secrets/bootstrap-token",
            ],
        },
        {  # listing only its own prefix: a missing object is then a 404, not a 403
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::bucket"],
            "Condition": {"StringLike": {"s3:prefix": ["prefix/demo.example.com", "prefix/demo.example.com/*"]}},
        },
        {  # but not the etcd snapshots (they hold every Secret), even by name
            "Effect": "Deny",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::bucket"],
            "Condition": {"StringLike": {"s3:prefix": ["prefix/demo.example.com/backups/etcd",
                                                       "prefix/demo.example.com/backups/etcd/*"]}},
        },
    ]
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    kms = [s for s in policy_document("nodes", "s3://bucket/demo.example.com", kms_key=key)["Statement"]
           if any(a.startswith("kms:") for a in s["Action"])]
    assert kms == [{"Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": [key]}]
    cp = policy_document("control-plane", "s3://bucket/demo.example.com")
    writes = [s for s in cp["Statement"] if "s3:PutObject" in s["Action"]]
    assert writes[0]["Resource"] == ["arn:aws:s3:::bucket/demo.example.com/secrets/bootstrap-token"]
    assert not [s for s in policy_document("nodes", "file:///tmp/x")["Statement"] if "s3:GetObject" in s["Action"]]


def test_names_and_helpers() -> None:
    assert elb_name("api", "demo.example.com") == "api-demo-example-com"
    long = elb_name("api", "a-very-long-cluster-name.with.many.parts.example.com")
    assert len(long) <= 32 and long == elb_name("api", "a-very-long-cluster-name.with.many.parts.example.com")
    assert architecture("m7g.large") == "arm64" and architecture("t4g.small") == "arm64"
    assert architecture("t3.medium") == "amd64" and architecture("g4dn.xlarge") == "amd64"
    fp = fingerprint("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDQejHZELcqicyXSsZf72ax36KTJF6WbjO/zRkEirZPV x")
    assert len(fp.split(":")) == 16

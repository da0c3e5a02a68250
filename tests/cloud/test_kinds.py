"""Every resource kind is declared completely: service, id field, known dependencies, and the
IAM permissions kopsy needs to manage it (which together document the operator's policy)."""

from __future__ import annotations

import pytest

from kopsy.cloud.aws.iam import policy_document
from kopsy.cloud.aws.kind import Kind
from kopsy.cloud.aws.registry import ALL_KINDS, KINDS, required_permissions
from kopsy.cloud.aws.images import architecture
from kopsy.cloud.aws.keypair import fingerprint
from kopsy.cloud.aws.loadbalancer import elb_name

SERVICE_PREFIX = {"ec2": "ec2:", "iam": "iam:", "elasticloadbalancing": "elasticloadbalancing:", "autoscaling": "autoscaling:"}


@pytest.mark.parametrize("kind", ALL_KINDS, ids=lambda k: k.kind)
def test_kind_declares_itself(kind: Kind) -> None:
    assert kind.kind and kind.service and kind.id_field
    assert kind.permissions, f"{kind.kind} declares no IAM permissions"
    prefix = SERVICE_PREFIX[kind.service]
    own = [p for p in kind.permissions if p.startswith(prefix)]
    assert any(":Describe" in p or ":Get" in p for p in own), f"{kind.kind} cannot read itself"
    assert any(":Delete" in p or ":Terminate" in p or ":Revoke" in p for p in own), f"{kind.kind} cannot delete"
    for dep in kind.depends_on + kind.delete_after:
        assert dep in KINDS, f"{kind.kind} depends on unknown kind {dep}"


def test_kinds_are_listed_after_their_dependencies() -> None:
    seen: set[str] = set()
    for kind in ALL_KINDS:
        assert set(kind.depends_on) <= seen, f"{kind.kind} listed before {set(kind.depends_on) - seen}"
        seen.add(kind.kind)


def test_operator_policy_is_the_union_of_kind_permissions() -> None:
    perms = required_permissions()
    assert "iam:PassRole" in perms and "ec2:CreateLaunchTemplateVersion" in perms
    assert perms == sorted(set(perms))


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

"""What the instance roles may do in the state store, read back from moto's IAM and evaluated.

- ``s3:ListBucket`` only for the role's own cluster prefix (an ``s3:prefix`` condition), so that
  on real S3 a missing object is a 404 rather than a 403, while other prefixes stay unlisted;
- a state bucket encrypted with a customer KMS key: ``kms:Decrypt`` (control planes also
  ``kms:GenerateDataKey``) on that key's ARN and on nothing else; SSE-S3 and the AWS-managed
  ``aws/s3`` key get no KMS grant at all.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import create_cluster, register_image

pytestmark = pytest.mark.e2e

NAME = "kms.example.com"
BUCKET = "kopsy-state"


def _list(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _condition_holds(condition: dict[str, Any], context: dict[str, str]) -> bool:
    """StringEquals/StringLike over the request context; a key absent from it fails (as in IAM)."""
    for op, tests in condition.items():
        for key, wanted in tests.items():
            if key not in context:
                return False
            value = context[key]
            if op == "StringEquals" and value not in _list(wanted):
                return False
            if op == "StringLike" and not any(fnmatch.fnmatchcase(value, w) for w in _list(wanted)):
                return False
            if op not in ("StringEquals", "StringLike"):
                raise AssertionError(f"evaluator does not know condition operator {op}")
    return True


def allowed(statements: list[dict[str, Any]], action: str, resource: str, context: dict[str, str] | None = None) -> bool:
    """IAM's evaluation for Allow-only identity policies, conditions included."""
    for s in statements:
        if s["Effect"] != "Allow":
            continue
        if not any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in _list(s.get("Action"))):
            continue
        if not any(fnmatch.fnmatchcase(resource, r) for r in _list(s.get("Resource"))):
            continue
        if _condition_holds(s.get("Condition", {}), context or {}):
            return True
    return False


def role_statements(boto: Callable[[str], Any], role: str) -> list[dict[str, Any]]:
    iam = boto("iam")
    out: list[dict[str, Any]] = []
    for p in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
        out += _list(doc["Statement"]) if isinstance(doc["Statement"], dict) else doc["Statement"]
    return out


def _update(aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
            ssh_keypair: tuple[Path, Path]) -> dict[str, list[dict[str, Any]]]:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    again = run_kopsy(["update", "cluster", NAME, "--detailed-exitcode"], env)
    assert again.returncode == 0, again.stdout  # the KMS lookup is stable: no policy churn
    return {role: role_statements(boto, f"{role}.{NAME}") for role in ("nodes", "control-plane")}


def _encrypt(boto: Callable[[str], Any], key_id: str | None) -> None:
    default: dict[str, str] = {"SSEAlgorithm": "aws:kms"}
    if key_id:
        default["KMSMasterKeyID"] = key_id
    boto("s3").put_bucket_encryption(
        Bucket=BUCKET, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": default}]}
    )


def test_list_bucket_only_for_the_roles_own_prefix_and_no_kms_without_a_customer_key(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path],
) -> None:
    roles = _update(aws_env, state_bucket, boto, run_kopsy, ssh_keypair)
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    for role, st in roles.items():
        for prefix in (f"{NAME}/pki/ca.crt", f"{NAME}/secrets/bootstrap-token", f"{NAME}/", NAME):
            assert allowed(st, "s3:ListBucket", bucket_arn, {"s3:prefix": prefix}), (role, prefix)
        for prefix in ("other.example.com/pki/ca.key", f"{NAME}.staging/pki", ""):
            assert not allowed(st, "s3:ListBucket", bucket_arn, {"s3:prefix": prefix}), (role, prefix)
        assert not allowed(st, "s3:ListBucket", bucket_arn), f"{role}: ListBucket of the whole bucket"
        assert not allowed(st, "s3:ListBucket", "arn:aws:s3:::another-bucket", {"s3:prefix": NAME})
        assert not any(a.startswith("kms:") for s in st for a in _list(s.get("Action"))), role
    assert allowed(roles["nodes"], "s3:GetObject", f"{bucket_arn}/{NAME}/pki/ca.crt")
    assert not allowed(roles["nodes"], "s3:GetObject", f"{bucket_arn}/{NAME}/pki/ca.key")


def test_a_customer_kms_key_is_granted_on_that_key_only(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path],
) -> None:
    kms = boto("kms")
    key = kms.create_key(Description="kopsy state")["KeyMetadata"]
    other = kms.create_key(Description="someone else's")["KeyMetadata"]
    kms.create_alias(AliasName="alias/kopsy-state", TargetKeyId=key["KeyId"])
    alias_arn = key["Arn"].split(":key/")[0] + ":alias/kopsy-state"
    _encrypt(boto, alias_arn)  # by alias: kopsy resolves it to the key's ARN
    roles = _update(aws_env, state_bucket, boto, run_kopsy, ssh_keypair)

    nodes, cp = roles["nodes"], roles["control-plane"]
    assert allowed(nodes, "kms:Decrypt", key["Arn"])
    assert not allowed(nodes, "kms:GenerateDataKey", key["Arn"])
    assert allowed(cp, "kms:Decrypt", key["Arn"]) and allowed(cp, "kms:GenerateDataKey", key["Arn"])
    for st in (nodes, cp):
        assert not allowed(st, "kms:Decrypt", other["Arn"])
        assert not allowed(st, "kms:Decrypt", alias_arn)
        kms_resources = {r for s in st if any(a.startswith("kms:") for a in _list(s["Action"])) for r in _list(s["Resource"])}
        assert kms_resources == {key["Arn"]}
        for s in st:
            if any(a.startswith("kms:") for a in _list(s["Action"])):
                assert set(_list(s["Action"])) <= {"kms:Decrypt", "kms:GenerateDataKey"}


def test_the_aws_managed_s3_key_needs_no_grant(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path],
) -> None:
    _encrypt(boto, None)  # SSE-KMS with the default aws/s3 key
    roles = _update(aws_env, state_bucket, boto, run_kopsy, ssh_keypair)
    for role, st in roles.items():
        assert not any(a.startswith("kms:") for s in st for a in _list(s.get("Action"))), role

"""Which KMS key, if any, the instances need to read the state bucket.

A state bucket whose default encryption is SSE-KMS with a customer-managed key serves objects
only to callers allowed ``kms:Decrypt`` on that key: without it every boot fails to fetch its
PKI. ``update`` reads the bucket's encryption (GetBucketEncryption) and hands the key's ARN to
the instance-role policies, which grant it on that key only. SSE-S3 and the AWS-managed
``aws/s3`` key need no grant.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from kopsy.cloud.aws.session import aws_errors, error_code

PERMISSIONS = ("s3:GetEncryptionConfiguration", "kms:DescribeKey")
NO_ENCRYPTION_CODES = {"ServerSideEncryptionConfigurationNotFoundError"}


def _kms_key_id(answer: dict[str, Any]) -> str | None:
    """The KMS key id/ARN/alias of a GetBucketEncryption answer's SSE-KMS rule, or None (pure)."""
    for rule in answer.get("ServerSideEncryptionConfiguration", {}).get("Rules", []):
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
            return str(default.get("KMSMasterKeyID") or "alias/aws/s3")
    return None


def state_bucket_kms_key(clients: Any, state_store_url: str) -> str:
    """The ARN of the customer-managed KMS key the state bucket encrypts with, or "" when the
    instances need no KMS permission (file:// store, SSE-S3, or the AWS-managed aws/s3 key)."""
    u = urlparse(state_store_url)
    if u.scheme != "s3":
        return ""
    bucket = u.netloc
    s3 = clients.client("s3")
    with aws_errors(f"reading the encryption of state bucket {bucket}"):
        try:
            answer = s3.get_bucket_encryption(Bucket=bucket)
        except Exception as exc:
            if error_code(exc) in NO_ENCRYPTION_CODES:
                return ""
            raise
    key_id = _kms_key_id(answer)
    if key_id is None:
        return ""
    if key_id == "alias/aws/s3" or key_id.endswith(":alias/aws/s3"):
        return ""
    with aws_errors(
        f"looking up KMS key {key_id}, which encrypts state bucket {bucket} (the instances need kms:Decrypt on it)"
    ):
        meta = clients.client("kms").describe_key(KeyId=key_id)["KeyMetadata"]
    if meta.get("KeyManager") == "AWS":
        return ""
    return str(meta["Arn"])

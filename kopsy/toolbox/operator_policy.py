"""The least-privilege IAM policy an operator needs to run create, update, validate and delete.

Derived, never hand-kept: every resource kind declares the IAM actions its find, create, modify
and delete make (``Kind.permissions``, checked against the calls a real run makes by
``tests/cloud/test_permissions_cover_calls.py``), and the S3 state store declares its own
(``kopsy.state.s3.PERMISSIONS``), and so does rolling-update (``kopsy.rolling.actions.PERMISSIONS``).
Given the state bucket, the S3 actions are limited to it.
"""

from __future__ import annotations

from typing import Any

POLICY_VERSION = "2012-10-17"


def operator_actions() -> list[str]:
    """Every IAM action kopsy's commands call, sorted and de-duplicated."""
    from kopsy.cloud.aws.registry import required_permissions
    from kopsy.rolling.actions import PERMISSIONS as ROLLING_UPDATE
    from kopsy.state.s3 import PERMISSIONS as STATE_STORE

    return sorted(set(required_permissions()) | set(STATE_STORE) | set(ROLLING_UPDATE))


def _sid(service: str) -> str:
    return "Kopsy" + "".join(part.capitalize() for part in service.replace("-", " ").split())


def operator_policy(state_bucket: str | None = None, partition: str = "aws", actions: list[str] | None = None) -> dict[str, Any]:
    """An IAM policy document: one statement per service; S3 scoped to ``state_bucket`` if given.
    ``actions`` overrides the derived list (for tests that take one away)."""
    by_service: dict[str, list[str]] = {}
    for action in operator_actions() if actions is None else sorted(set(actions)):
        by_service.setdefault(action.split(":", 1)[0], []).append(action)
    statements: list[dict[str, Any]] = []
    for service, acts in sorted(by_service.items()):
        resource: Any = "*"
        if service == "s3" and state_bucket:
            resource = [f"arn:{partition}:s3:::{state_bucket}", f"arn:{partition}:s3:::{state_bucket}/*"]
        statements.append({"Sid": _sid(service), "Effect": "Allow", "Action": acts, "Resource": resource})
    return {"Version": POLICY_VERSION, "Statement": statements}

"""The declared permissions are the real ones: every AWS call an update, a no-op update and a
delete make (in-process moto) is covered by some kind's declared IAM actions."""

from __future__ import annotations

import pytest
from goldenkit import HERE, inputs_for

IAM_ACTION = {"s3:GetBucketEncryption": "s3:GetEncryptionConfiguration"}  # API name -> IAM action name
PREFIX = {"ec2": "ec2", "iam": "iam", "elasticloadbalancing": "elasticloadbalancing", "elb": "elasticloadbalancing", "autoscaling": "autoscaling", "ssm": "ssm"}


@pytest.mark.slow  # a whole update, no-op update and delete in moto
def test_every_call_is_a_declared_permission(mocked: None) -> None:
    import boto3

    from kopsy.cloud.aws.registry import required_permissions
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.reconcile.delete import delete_resources
    from kopsy.reconcile.update import apply_update, plan_update

    clients = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))
    clients.client("s3").create_bucket(Bucket="golden-state")  # update reads its encryption
    seen: set[str] = set()
    clients.on_call(lambda service, op: seen.add(f"{service}:{op}"))
    inp = inputs_for((HERE / "_baseline" / "spec.yaml").read_text())
    assert apply_update(clients, plan_update(clients, inp)).ok
    assert plan_update(clients, inp).plan.empty
    result = delete_resources(clients, inp.cluster.name, timeout=60)
    assert result.ok, result.remaining
    from kopsy.cloud.aws.models import OPERATIONS

    trimmed = {f"{svc}:{op}" for c in seen for svc, op in [c.split(":")] if svc in OPERATIONS}
    assert {c for c in trimmed if c.split(":")[1] not in OPERATIONS[c.split(":")[0]]} == set()  # models.py serves them
    declared = set(required_permissions())
    called = {f"{PREFIX.get(c.split(':')[0], c.split(':')[0])}:{c.split(':')[1]}" for c in seen}
    called = {c.replace("elbv2:", "elasticloadbalancing:") for c in called}
    called = {IAM_ACTION.get(c, c) for c in called} - {"s3:CreateBucket"}  # the test's own call
    assert called - declared == set()
    assert len(called) > 40

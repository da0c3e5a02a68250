"""The NAT gateway's waits, on a stub EC2 that answers as AWS does (moto makes gateways
available and deleted at once, so it cannot show them): a delete is reported in progress until
AWS lists the gateway deleted, and retried like a dependency; a create waits for available and
names a failed gateway's reason."""

from __future__ import annotations

from typing import Any

import pytest

from kopsy.cloud.aws.nat import NatGateway
from kopsy.cloud.aws.retry import InProgress, is_dependency
from kopsy.errors import CloudError
from kopsy.reconcile.values import Actual, ApplyContext, Desired


class _Ec2:
    def __init__(self, states: list[str]) -> None:
        self.states = states  # what each describe answers, in turn (the last one repeats)
        self.deleted = 0

    def describe_nat_gateways(self, **_: Any) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {"NatGateways": [{"NatGatewayId": "nat-1", "State": state, "FailureMessage": "Subnet has no route to an IGW"}]}

    def delete_nat_gateway(self, **_: Any) -> dict[str, Any]:
        self.deleted += 1
        return {}


class _Clients:
    region = "us-east-1"

    def __init__(self, ec2: _Ec2) -> None:
        self.ec2 = ec2

    def client(self, service: str) -> _Ec2:
        return self.ec2


def _ctx(ec2: _Ec2, timeout: float = 30.0) -> ApplyContext:
    return ApplyContext(_Clients(ec2), "c.example.com", retry_timeout=timeout)  # type: ignore[arg-type]


HAVE = Actual("NatGateway", "utility-us-east-1a.c.example.com", "nat-1")


def test_a_deleting_gateway_is_in_progress_until_aws_lists_it_deleted() -> None:
    ec2 = _Ec2(["available", "deleting"])
    with pytest.raises(InProgress, match="is deleting; AWS takes minutes") as err:
        NatGateway().delete(_ctx(ec2), HAVE)
    assert ec2.deleted == 1 and is_dependency(err.value)  # retried within --wait, shown as "Waiting"
    ec2.states = ["deleting"]
    with pytest.raises(InProgress):
        NatGateway().delete(_ctx(ec2), HAVE)
    assert ec2.deleted == 1, "a gateway already deleting is not asked again"
    ec2.states = ["deleted"]
    NatGateway().delete(_ctx(ec2), HAVE)


@pytest.mark.slow  # one real backoff (1 s) between the pending and the available answer
def test_finish_waits_for_available_and_names_a_failure() -> None:
    want = Desired("NatGateway", HAVE.name, {})
    ec2 = _Ec2(["pending", "available"])
    assert NatGateway().finish(_ctx(ec2), want, {}, {"id": "nat-1", "state": "pending"})["state"] == "available"
    with pytest.raises(CloudError, match="failed: Subnet has no route to an IGW"):
        NatGateway().finish(_ctx(_Ec2(["failed"])), want, {}, {"id": "nat-1", "state": "pending"})
    assert NatGateway().finish(_ctx(_Ec2(["failed"])), want, {}, {"id": "nat-1", "state": "available"})["id"] == "nat-1"

"""What ``delete`` says about a resource it could not remove: the error of its own delete, or
for one never attempted, which failed delete it was waiting for (fake kinds, no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from kopsy.reconcile.values import Actual, ApplyContext
from kopsy.cloud.aws.registry import KINDS
from kopsy.cloud.aws.vpc import VPC, Subnet
from kopsy.errors import CloudError
from kopsy.reconcile import delete as D


class StuckSubnet(Subnet):
    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        raise CloudError(f"deleting subnet {have.id}: InvalidState: held by something else")


class RecordedVPC(VPC):
    deleted: list[str] = []

    def delete(self, ctx: ApplyContext, have: Actual) -> None:
        self.deleted.append(have.id)


def test_a_blocked_resource_names_what_blocks_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(KINDS, "Subnet", StuckSubnet())
    monkeypatch.setitem(KINDS, "VPC", RecordedVPC())
    left = [Actual("VPC", "c.example.com", "vpc-1"), Actual("Subnet", "us-east-1a.c.example.com", "subnet-1")]
    monkeypatch.setattr(D, "inventory", lambda clients, cluster: list(left))
    result = D.delete_resources(None, "c.example.com", timeout=30)  # type: ignore[arg-type]
    assert RecordedVPC.deleted == [] and [a.id for a in result.remaining] == ["vpc-1", "subnet-1"]
    assert "held by something else" in result.errors[("Subnet", "subnet-1")]
    assert result.errors[("VPC", "vpc-1")] == "not attempted: waits for Subnet/us-east-1a.c.example.com to be deleted first"


def test_every_instance_of_a_failed_batch_gets_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from kopsy.cloud.aws.instances import Instance

    class StuckInstances(Instance):
        def delete_many(self, ctx: ApplyContext, haves: list[Actual]) -> None:
            raise CloudError("terminating 2 instance(s): UnauthorizedOperation")

    monkeypatch.setitem(KINDS, "Instance", StuckInstances())
    left: list[Any] = [Actual("Instance", "n", "i-1"), Actual("Instance", "n", "i-2")]
    monkeypatch.setattr(D, "inventory", lambda clients, cluster: list(left))
    result = D.delete_resources(None, "c.example.com", timeout=30)  # type: ignore[arg-type]
    assert {k: "UnauthorizedOperation" in v for k, v in result.errors.items()} == {("Instance", "i-1"): True, ("Instance", "i-2"): True}

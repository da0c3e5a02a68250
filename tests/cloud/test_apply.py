"""The applier on fake kinds: dependency order, outputs flowing into dependents, follow-ups
that do not block dependents but still fail the apply when they fail."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kopsy.cloud.aws.kind import ApplyContext, Desired, Kind, Ref
from kopsy.cloud.aws.registry import KINDS
from kopsy.reconcile.apply import apply_plan
from kopsy.reconcile.changes import Change, Plan


class Recorder(Kind):
    kind = "VPC"  # borrow a real kind name so the graph helpers know it
    service = "ec2"
    id_field = "Id"
    permissions = ("ec2:Describe", "ec2:Delete")

    def __init__(self, log: list[str], fail_follow_up: bool = False) -> None:
        self.log = log
        self.fail_follow_up = fail_follow_up
        self.lock = threading.Lock()

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.log.append(f"create {want.name} {fields.get('parent', '')}")

        def later() -> None:
            if self.fail_follow_up and want.name == "a":
                raise RuntimeError("attribute failed")

        ctx.follow_up(want.key, later)
        return {"id": f"id-{want.name}"}


def test_outputs_flow_and_follow_up_failures_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    log: list[str] = []
    monkeypatch.setitem(KINDS, "VPC", Recorder(log, fail_follow_up=True))
    a = Desired("VPC", "a", {})
    b = Desired("VPC", "b", {"parent": Ref("VPC", "a")})
    plan = Plan("c", [Change("create", "VPC", "a", None, desired=a), Change("create", "VPC", "b", None, desired=b)])
    outputs: dict[Any, Any] = {}
    result = apply_plan(plan, ApplyContext(None, "c"), outputs=outputs, workers=2)  # type: ignore[arg-type]
    assert log == ["create a ", "create b id-a"]  # b got a's id, after a
    assert [c.name for c in result.done] == ["b"]
    assert [(c.name, str(e)) for c, e in result.failed] == [("a", "attribute failed")]
    assert outputs[("VPC", "b")] == {"id": "id-b"}

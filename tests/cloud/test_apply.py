"""The applier on fake kinds: dependency order, outputs flowing into dependents, follow-ups
that do not block dependents but still fail the apply when they fail."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kopsy.cloud.aws.kind import Kind
from kopsy.errors import StateStoreError
from kopsy.reconcile.values import ApplyContext, Desired, Ref
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


class Network(Kind):
    """Fakes for a VPC, a gateway created in two steps (``late_fields``), and a dependent."""

    def __init__(self, kind: str, log: list[str], gateway_created: threading.Event, fail: bool = False) -> None:
        self.kind = kind  # type: ignore[misc]
        self.late_fields = ("vpc",) if kind == "InternetGateway" else ()  # type: ignore[misc]
        self.log, self.gateway_created, self.fail = log, gateway_created, fail

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "VPC":
            # The gateway's create must start while the VPC's is still running.
            started = self.gateway_created.wait(timeout=5)
            self.log.append(f"VPC created (gateway create already started: {started})")
        elif self.kind == "InternetGateway":
            self.log.append(f"gateway created with fields {sorted(fields)}")
            self.gateway_created.set()
            if self.fail:
                raise RuntimeError("CreateInternetGateway refused")
        else:
            self.log.append(f"{self.kind} created")
        return {"id": f"id-{want.name}"}

    def finish(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any], created: dict[str, Any]) -> dict[str, Any]:
        self.log.append(f"gateway {created['id']} attached to {fields['vpc']}")
        return {**created, "vpcs": (fields["vpc"],)}


def _two_step_plan(monkeypatch: pytest.MonkeyPatch, fail: bool) -> tuple[Plan, list[str]]:
    log: list[str] = []
    created = threading.Event()
    for kind in ("VPC", "InternetGateway", "LoadBalancer"):
        monkeypatch.setitem(KINDS, kind, Network(kind, log, created, fail=fail))
    vpc = Desired("VPC", "net", {})
    gw = Desired("InternetGateway", "gw", {"vpc": Ref("VPC", "net")})
    lb = Desired("LoadBalancer", "api", {}, extra_deps=(("InternetGateway", "gw"),))
    plan = Plan("c", [Change("create", d.kind, d.name, None, desired=d) for d in (vpc, gw, lb)])
    return plan, log


def test_a_two_step_create_starts_before_what_it_attaches_to_and_holds_back_its_dependents(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan, log = _two_step_plan(monkeypatch, fail=False)
    events: list[tuple[str, str]] = []
    result = apply_plan(plan, ApplyContext(None, "c"), outputs={}, workers=4,  # type: ignore[arg-type]
                        on_event=lambda state, c, e: events.append((state, c.name)))
    assert result.ok
    assert log == [
        "gateway created with fields []",  # the late field (vpc) is not given to the create
        "VPC created (gateway create already started: True)",
        "gateway id-gw attached to id-net",
        "LoadBalancer created",  # only after the gateway's second step
    ]
    assert events.count(("done", "gw")) == 1 and events.count(("start", "gw")) == 1
    assert events.index(("done", "gw")) < events.index(("start", "api"))


def test_a_failed_first_step_is_reported_once_and_skips_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, log = _two_step_plan(monkeypatch, fail=True)
    events: list[tuple[str, str]] = []
    result = apply_plan(plan, ApplyContext(None, "c"), outputs={}, workers=4,  # type: ignore[arg-type]
                        on_event=lambda state, c, e: events.append((state, c.name)))
    assert [(c.name, str(e)) for c, e in result.failed] == [("gw", "CreateInternetGateway refused")]
    assert [c.name for c in result.skipped] == ["api"] and [c.name for c in result.done] == ["net"]
    assert not any("attached" in line for line in log)
    assert [e for e in events if e[1] == "gw"] == [("start", "gw"), ("failed", "gw")]


class Pinning(Kind):
    """A VPC that waits until publishing has started, and a template that pins what is published
    (``pins_published``): both record what they saw of the store."""

    def __init__(self, kind: str, log: list[str], publishing: threading.Event, published: threading.Event) -> None:
        self.kind = kind  # type: ignore[misc]
        self.pins_published = kind == "LaunchTemplate"  # type: ignore[misc]
        self.log, self.publishing, self.published = log, publishing, published

    def create(self, ctx: ApplyContext, want: Desired, fields: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "VPC":
            self.log.append(f"VPC created (publishing already started: {self.publishing.wait(timeout=5)})")
        else:
            self.log.append(f"{self.kind} created (published: {self.published.is_set()})")
        return {"id": f"id-{want.name}"}


def _pinning_plan(monkeypatch: pytest.MonkeyPatch) -> tuple[Plan, list[str], threading.Event, threading.Event]:
    log: list[str] = []
    publishing, published = threading.Event(), threading.Event()
    for kind in ("VPC", "LaunchTemplate", "AutoScalingGroup"):
        monkeypatch.setitem(KINDS, kind, Pinning(kind, log, publishing, published))
    vpc = Desired("VPC", "net", {})
    lt = Desired("LaunchTemplate", "nodes", {})
    asg = Desired("AutoScalingGroup", "nodes", {"template": Ref("LaunchTemplate", "nodes")})
    return Plan("c", [Change("create", d.kind, d.name, None, desired=d) for d in (vpc, lt, asg)]), log, publishing, published


def test_publishing_runs_beside_the_first_changes_and_before_every_template(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, log, publishing, published = _pinning_plan(monkeypatch)

    def publish() -> None:
        publishing.set()
        time.sleep(0.05)  # the VPC is created meanwhile
        log.append("published")
        published.set()

    result = apply_plan(plan, ApplyContext(None, "c"), outputs={}, workers=4, publish=publish)  # type: ignore[arg-type]
    assert result.ok and result.publish_error is None
    assert log == ["VPC created (publishing already started: True)", "published",
                   "LaunchTemplate created (published: True)", "AutoScalingGroup created (published: True)"]


def test_a_failed_publish_leaves_every_template_and_what_needs_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    plan, log, publishing, _ = _pinning_plan(monkeypatch)

    def publish() -> None:
        publishing.set()
        raise StateStoreError("could not write s3://b/c/addons/x.yaml")

    result = apply_plan(plan, ApplyContext(None, "c"), outputs={}, workers=4, publish=publish)  # type: ignore[arg-type]
    assert not result.ok and str(result.publish_error) == "could not write s3://b/c/addons/x.yaml"
    assert [c.name for c in result.done] == ["net"] and result.failed == []
    assert sorted(c.kind for c in result.skipped) == ["AutoScalingGroup", "LaunchTemplate"]
    assert log == ["VPC created (publishing already started: True)"]

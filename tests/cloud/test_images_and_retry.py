"""AMI resolution (SSM parameter first, DescribeImages fallback) and the retry predicates."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from kopsy.cloud.aws.images import CANONICAL_OWNER, resolve_image
from kopsy.cloud.aws.retry import is_dependency, is_iam_propagation
from kopsy.cloud.aws.session import translate
from kopsy.errors import KopsyError


def _err(code: str, msg: str = "", op: str = "Op") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": msg}}, op)


class FakeClients:
    """Stands in for AwsClients: a region and canned ssm/ec2 clients."""

    region = "us-east-1"

    def __init__(self, ssm: Any, ec2: Any) -> None:
        self._c = {"ssm": ssm, "ec2": ec2}

    def client(self, service: str) -> Any:
        return self._c[service]


class Ssm:
    def __init__(self, value: str | None) -> None:
        self.value = value
        self.asked: list[str] = []

    def get_parameter(self, Name: str) -> Any:
        self.asked.append(Name)
        if self.value is None:
            raise _err("ParameterNotFound")
        return {"Parameter": {"Value": self.value}}


class Ec2:
    def __init__(self, images: list[dict[str, str]]) -> None:
        self.images = images
        self.calls: list[dict[str, Any]] = []

    def describe_images(self, **kw: Any) -> Any:
        self.calls.append(kw)
        return {"Images": self.images}


def test_explicit_ami_needs_no_lookup() -> None:
    assert resolve_image(FakeClients(None, None), "ami-123", "t3.medium") == "ami-123"  # type: ignore[arg-type]


def test_ssm_parameter_by_architecture() -> None:
    ssm = Ssm("ami-fromssm")
    assert resolve_image(FakeClients(ssm, Ec2([])), "", "m7g.large") == "ami-fromssm"  # type: ignore[arg-type]
    assert "/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id" in ssm.asked[0]


def test_describe_images_fallback_picks_newest_canonical() -> None:
    ec2 = Ec2([{"ImageId": "ami-old", "CreationDate": "2024-05-01"}, {"ImageId": "ami-new", "CreationDate": "2025-01-01"}])
    assert resolve_image(FakeClients(Ssm(None), ec2), "", "t3.medium") == "ami-new"  # type: ignore[arg-type]
    assert ec2.calls[0]["Owners"] == [CANONICAL_OWNER]
    with pytest.raises(KopsyError, match="set 'image'"):
        resolve_image(FakeClients(Ssm(None), Ec2([])), "", "t3.medium")  # type: ignore[arg-type]


def test_retry_predicates_are_specific() -> None:
    iam_lag = _err("ValidationError", "You must use a valid fully-formed launch template. Invalid IamInstanceProfile name")
    assert is_iam_propagation(iam_lag)
    assert is_iam_propagation(translate(iam_lag, "creating") .__class__("x")) is False
    wrapped = translate(iam_lag, "creating")
    wrapped.__cause__ = iam_lag
    assert is_iam_propagation(wrapped)  # still recognised after translation
    assert not is_iam_propagation(_err("ValidationError", "MaxSize must be >= MinSize"))
    assert is_dependency(_err("DependencyViolation")) and not is_dependency(_err("InvalidGroup.NotFound"))


def test_asg_create_rides_out_iam_propagation() -> None:
    """CreateAutoScalingGroup right after the instance profile: retried on that error only."""
    from kopsy.cloud.aws.autoscaling import AutoScalingGroup
    from kopsy.reconcile.values import ApplyContext, Desired

    class Asg:
        calls = 0

        def create_auto_scaling_group(self, **kw: Any) -> None:
            Asg.calls += 1
            if Asg.calls < 3:
                raise _err("ValidationError", "Invalid IamInstanceProfile: nodes.demo.example.com", "CreateAutoScalingGroup")

    class Clients:
        def client(self, service: str) -> Any:
            return Asg()

    want = Desired("AutoScalingGroup", "nodes.demo.example.com", {})
    fields = {"launch_template": "lt", "launch_template_version": "1", "min_size": 1, "max_size": 1,
              "subnets": frozenset({"subnet-1"}), "target_groups": frozenset()}
    out = AutoScalingGroup().create(ApplyContext(Clients(), "demo.example.com", retry_timeout=20), want, fields)  # type: ignore[arg-type]
    assert out["id"] == "nodes.demo.example.com" and Asg.calls == 3


def test_retry_backs_off_and_gives_up_at_its_deadline() -> None:
    """Bounded: the matching error is re-raised once the time budget is spent; delays grow
    (exponential with jitter, capped), never one fixed sleep; other errors are not retried."""
    from kopsy.cloud.aws.retry import retry

    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    def always_lagging() -> None:
        raise _err("ValidationError", "Invalid IamInstanceProfile")

    told: list[BaseException] = []
    with pytest.raises(ClientError):
        retry(always_lagging, when=is_iam_propagation, timeout=60, sleep=sleep, clock=lambda: now[0], on_retry=told.append)
    assert len(told) == len(slept)  # the caller hears of every wait (delete prints "Waiting ...")
    assert 0 < sum(slept) <= 60 and now[0] >= 60 - 1e-9
    assert max(slept) <= 15 and slept[3] > slept[0], slept  # grows, capped at max_delay
    calls = []

    def wrong() -> None:
        calls.append(1)
        raise _err("ValidationError", "MaxSize must be >= MinSize")

    with pytest.raises(ClientError):
        retry(wrong, when=is_iam_propagation, timeout=60, sleep=sleep, clock=lambda: now[0])
    assert calls == [1]

"""The fault proxy itself: it names calls right, and botocore really retries every fault it injects.

If botocore stopped retrying one of these formats, the fault tests would pass for the wrong
reason (kopsy would fail fast and the inventories would differ), so this is checked first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from reliability_support import AwsProxy, Call, sequential_periods

pytestmark = pytest.mark.slow  # a moto server behind the fault proxy, retries with backoff

SERVICES = {
    "ec2": (lambda c: c.describe_vpcs(), "DescribeVpcs", "RequestLimitExceeded", "RequestExpired"),
    "iam": (lambda c: c.list_roles(), "ListRoles", "Throttling", "ExpiredToken"),
    "elbv2": (lambda c: c.describe_load_balancers(), "DescribeLoadBalancers", "Throttling", "ExpiredToken"),
    "autoscaling": (lambda c: c.describe_auto_scaling_groups(), "DescribeAutoScalingGroups", "Throttling", "ExpiredToken"),
    "s3": (lambda c: c.list_buckets(), "ListBuckets", "SlowDown", "ExpiredToken"),
    "ssm": (lambda c: c.describe_parameters(), "DescribeParameters", "ThrottlingException", "ExpiredToken"),
}


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """What is checked here is *whether* botocore retries, not how long it waits in between."""
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


@pytest.fixture
def proxy(rel_moto: str) -> Iterator[AwsProxy]:
    with AwsProxy(rel_moto, seed=7) as p:
        yield p


def _client(proxy: AwsProxy, service: str, attempts: int = 3) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    return session.client(service, endpoint_url=proxy.url,
                          config=Config(retries={"mode": "standard", "total_max_attempts": attempts}))


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", repr(exc)))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_injected_fault_is_retried_by_botocore_in_the_services_own_format(proxy: AwsProxy, service: str) -> None:
    call, op, throttle_code, expired_code = SERVICES[service]
    client = _client(proxy, service, attempts=3)
    for kind, code in (("503", "ServiceUnavailable"), ("throttle", throttle_code)):
        proxy.reset()
        proxy.set_faults(1.0, [kind])
        with pytest.raises(Exception) as info:
            call(client)
        assert _code(info.value) == code
        assert [(c.service, c.operation, c.fault) for c in proxy.calls] == [(service, op, kind)] * 3, "retried to the limit"
    proxy.set_faults(0.0)
    proxy.expired_credentials = True
    proxy.reset()
    with pytest.raises(Exception) as info:
        call(client)
    assert _code(info.value) == expired_code
    assert len(proxy.calls) == 1, "an expired token is not retried"
    proxy.expired_credentials = False
    proxy.reset()
    call(client)
    assert [(c.service, c.operation, c.fault) for c in proxy.calls] == [(service, op, "")]


def test_at_a_20_percent_fault_rate_calls_still_succeed(proxy: AwsProxy) -> None:
    proxy.set_faults(0.2, seed=3)
    ec2 = _client(proxy, "ec2", attempts=9)
    for _ in range(40):
        ec2.describe_vpcs()
    faults = sum(1 for c in proxy.calls if c.fault)
    assert 40 + faults == len(proxy.calls) and faults > 0


def test_s3_rest_calls_are_named_like_boto3_operations(proxy: AwsProxy) -> None:
    s3 = _client(proxy, "s3")
    s3.create_bucket(Bucket="proxy-names")
    s3.put_object(Bucket="proxy-names", Key="a/b", Body=b"x")
    s3.head_object(Bucket="proxy-names", Key="a/b")
    s3.get_object(Bucket="proxy-names", Key="a/b")["Body"].read()
    s3.list_objects_v2(Bucket="proxy-names", Prefix="a/")
    s3.delete_objects(Bucket="proxy-names", Delete={"Objects": [{"Key": "a/b"}]})
    s3.delete_object(Bucket="proxy-names", Key="a/b")
    s3.delete_bucket(Bucket="proxy-names")
    assert [c.operation for c in proxy.calls] == [
        "CreateBucket", "PutObject", "HeadObject", "GetObject", "ListObjectsV2", "DeleteObjects", "DeleteObject", "DeleteBucket",
    ]


def test_hold_after_lets_exactly_k_calls_through(proxy: AwsProxy) -> None:
    ec2 = _client(proxy, "ec2", attempts=1)
    proxy.hold_after(2)
    results: list[str] = []

    def work() -> None:
        for _ in range(3):
            try:
                ec2.describe_vpcs()
                results.append("ok")
            except Exception as exc:
                results.append(_code(exc))

    t = threading.Thread(target=work)
    t.start()
    assert proxy.held.wait(10)
    assert results == ["ok", "ok"] and proxy.forwarded >= 2
    proxy.release()
    t.join(10)
    assert results == ["ok", "ok", "ServiceUnavailable"]


def test_latency_is_added_and_sequential_periods_count_the_chain(rel_moto: str) -> None:
    with AwsProxy(rel_moto, latency_ms=40) as p:
        ec2 = _client(p, "ec2")
        ec2.describe_vpcs()  # warm-up (moto loads EC2 on first use)
        p.reset()
        start = time.monotonic()
        for _ in range(3):
            ec2.describe_vpcs()
        threads = [threading.Thread(target=ec2.describe_subnets) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert time.monotonic() - start >= 4 * 0.04
        assert len(p.calls) == 7
        assert sequential_periods(p.calls) == 4  # 3 in a row, then 4 at once count as one more


def test_sequential_periods_is_the_longest_non_overlapping_chain() -> None:
    calls = [Call("ec2", "A", 0, 1), Call("ec2", "B", 0.5, 1.5), Call("ec2", "C", 1, 2), Call("ec2", "D", 2, 3)]
    assert sequential_periods(calls) == 3
    assert sequential_periods([]) == 0

"""AwsClients builds each service's client once, even when threads (and the prewarm thread)
ask at once, and the prewarm thread never raises where nobody handles it."""

from __future__ import annotations

import threading
from pathlib import Path

import boto3

from kopsy.cloud.aws.session import AwsClients


def test_one_client_per_service_whatever_the_threads(mocked: None) -> None:
    clients = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))
    got: list[object] = []
    threads = [threading.Thread(target=lambda s=s: got.append(clients.client(s))) for s in ["ec2", "iam"] * 4]
    warm = clients.prewarm(["ec2", "iam", "elbv2"])
    for t in threads:
        t.start()
    for t in threads + [warm]:
        t.join()
    assert len({id(c) for c in got}) == 2
    assert clients.client("elbv2") is clients.client("elbv2")


def test_prewarm_swallows_what_the_real_call_will_report(mocked: None) -> None:
    clients = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))

    def boom() -> None:
        raise RuntimeError("reported later by the real call")

    clients.prewarm(["no-such-service"], boom).join()
    assert "no-such-service" not in clients._clients


def test_trimmed_and_other_services_share_one_factory(mocked: None, tmp_path: Path) -> None:
    clients = AwsClients("us-east-1", models_cache=tmp_path)
    ec2 = clients.client("ec2")
    assert len(ec2.meta.service_model.operation_names) < 200  # the trimmed model
    assert ec2.describe_vpcs()["Vpcs"] is not None
    assert clients.client("route53").meta.service_model.service_name == "route53"  # not trimmed: full model


def test_event_renaming_is_botocores(mocked: None, tmp_path: Path) -> None:
    """kopsy's cheaper event renaming (session._fast_aliaser) gives botocore's own answer for
    every event name botocore emits for the operations kopsy calls, and for each alias of its
    table in any position; and the clients kopsy builds use it."""
    from botocore.hooks import EventAliaser, HierarchicalEmitter
    from botocore.utils import EVENT_ALIASES

    from kopsy.cloud.aws import models as M
    from kopsy.cloud.aws.session import _fast_aliaser

    clients = AwsClients("us-east-1", models_cache=tmp_path)
    ec2 = clients.client("ec2")
    assert type(ec2.meta.events) is _fast_aliaser()
    names = {f"{prefix}.{sid}.{op}"
             for sid in {*M.SERVED, *EVENT_ALIASES, "elastic-load-balancing-v2", "auto-scaling", "elasticloadbalancing"}
             for op in ("DescribeVpcs", "CreateLoadBalancer", "GetObject", "")
             for prefix in ("before-parameter-build", "provide-client-params", "before-call", "after-call",
                            "request-created", "needs-retry", "choose-signer", "before-sign", "before-send",
                            "creating-client-class", "before-endpoint-resolution", "after-call-error")}
    names |= {f"x.{old}.y" for old in EVENT_ALIASES} | {old for old in EVENT_ALIASES} | {f"{old}.{old}" for old in EVENT_ALIASES}
    theirs = EventAliaser(HierarchicalEmitter())
    ours = _fast_aliaser()(HierarchicalEmitter())
    renamed = 0
    for name in sorted(names):
        expected = theirs._alias_event_name(name)
        assert ours._alias_event_name(name) == expected, name
        assert ours._alias_event_name(name) == expected, name  # and from its cache
        renamed += expected != name
    assert renamed > 20  # the table did rename names

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
    warm = clients.prewarm("ec2", "iam", "elbv2")
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

    clients.prewarm("no-such-service", boom).join()
    assert "no-such-service" not in clients._clients


def test_trimmed_and_other_services_share_one_factory(mocked: None, tmp_path: Path) -> None:
    clients = AwsClients("us-east-1", models_cache=tmp_path)
    ec2 = clients.client("ec2")
    assert len(ec2.meta.service_model.operation_names) < 200  # the trimmed model
    assert ec2.describe_vpcs()["Vpcs"] is not None
    assert clients.client("route53").meta.service_model.service_name == "route53"  # not trimmed: full model

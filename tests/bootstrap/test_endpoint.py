"""find_api_endpoint against moto (in-process): found by tags among many load balancers."""

from __future__ import annotations

import pytest

from kopsy.cloud.aws.endpoint import find_api_endpoint, pick_api_endpoint

moto = pytest.importorskip("moto")


@pytest.fixture
def clients(monkeypatch):
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        from kopsy.cloud.aws.session import AwsClients

        yield AwsClients("us-east-1")


def _subnet(clients) -> str:
    ec2 = clients.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="172.20.32.0/19", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]


def _nlb(clients, subnet: str, name: str, tags: dict[str, str]) -> str:
    lb = clients.client("elbv2").create_load_balancer(
        Name=name, Subnets=[subnet], Type="network", Scheme="internet-facing",
        Tags=[{"Key": k, "Value": v} for k, v in tags.items()],
    )["LoadBalancers"][0]
    return lb["DNSName"]


@pytest.mark.slow  # dozens of load balancers in moto
def test_finds_the_api_nlb_by_tags_among_many(clients):
    subnet = _subnet(clients)
    for i in range(23):  # more than one DescribeTags batch of 20
        _nlb(clients, subnet, f"other-{i}", {"kubernetes.io/cluster/other.example.com": "owned", "kopsy.io/role": "api"})
    _nlb(clients, subnet, "demo-not-api", {"kubernetes.io/cluster/demo.example.com": "owned"})
    _nlb(clients, subnet, "demo-shared", {"kubernetes.io/cluster/demo.example.com": "shared", "kopsy.io/role": "api"})
    want = _nlb(clients, subnet, "api-demo", {"kubernetes.io/cluster/demo.example.com": "owned", "kopsy.io/role": "api",
                                               "KubernetesCluster": "demo.example.com"})
    from kopsy.cloud.aws.session import AwsClients

    fresh = AwsClients("us-east-1")  # hooks only reach clients built after on_call
    calls: list[str] = []
    fresh.on_call(lambda service, op: calls.append(op))
    assert find_api_endpoint(fresh, "demo.example.com") == want
    assert calls.count("DescribeTags") == 2 and calls.count("DescribeLoadBalancers") == 1
    assert find_api_endpoint(clients, "absent.example.com") is None


def test_no_load_balancers_at_all(clients):
    assert find_api_endpoint(clients, "demo.example.com") is None


def test_pick_prefers_usable_then_oldest():
    tags = {"kubernetes.io/cluster/c": "owned", "kopsy.io/role": "api"}
    lbs = [
        ({"DNSName": "failed", "State": {"Code": "failed"}, "CreatedTime": "2020"}, tags),
        ({"DNSName": "newer", "State": {"Code": "active"}, "CreatedTime": "2025"}, tags),
        ({"DNSName": "older", "State": {"Code": "active"}, "CreatedTime": "2024"}, tags),
        ({"DNSName": "prov", "State": {"Code": "provisioning"}, "CreatedTime": "2000"}, tags),
    ]
    assert pick_api_endpoint(lbs, "c") == "older"
    assert pick_api_endpoint(lbs[:1], "c") is None

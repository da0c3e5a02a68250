"""The tests' inventory (tests/inventory.py) covers every kind kopsy knows, and sees each one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kopsy.cloud.aws.registry import ALL_KINDS
from tests.inventory import LISTERS, inventory, present, total

sys.path.insert(0, str(Path(__file__).parent / "cloud"))


def test_every_kind_in_the_registry_has_a_lister() -> None:
    kinds = {k.kind for k in ALL_KINDS}
    assert not kinds - set(LISTERS), f"tests/inventory.py cannot see {sorted(kinds - set(LISTERS))}: add a lister"


@pytest.mark.slow
def test_the_inventory_sees_every_kind_of_an_applied_cluster_and_nothing_after_delete(mocked: None) -> None:
    import boto3
    from goldenkit import HERE, inputs_for

    from kopsy.cloud.aws import tags as T
    from kopsy.cloud.aws.registry import KINDS
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.reconcile.delete import delete_resources
    from kopsy.reconcile.update import apply_update, plan_update

    clients = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))
    clients.client("s3").create_bucket(Bucket="golden-state")  # update reads its encryption
    # The private topology: every kind the public one has, plus NAT gateways and Elastic IPs.
    inp = inputs_for((HERE / "private-topology" / "spec.yaml").read_text())
    name = inp.cluster.name
    assert apply_update(clients, plan_update(clients, inp)).ok
    ec2 = clients.client("ec2")
    subnet = ec2.describe_subnets(Filters=T.owner_filter(name))["Subnets"][0]
    # What a cluster's controllers leave: a volume, its snapshot, a network interface, a classic ELB.
    tags = T.cluster_tags(name, "pvc")
    volume = ec2.create_volume(AvailabilityZone=subnet["AvailabilityZone"], Size=8, TagSpecifications=T.tag_spec("volume", tags))
    ec2.create_snapshot(VolumeId=volume["VolumeId"], TagSpecifications=T.tag_spec("snapshot", tags))
    ec2.create_network_interface(SubnetId=subnet["SubnetId"], TagSpecifications=T.tag_spec("network-interface", tags))
    clients.client("elb").create_load_balancer(
        LoadBalancerName="a1b2c3", Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 30080}],
        Subnets=[subnet["SubnetId"]], Tags=T.to_list(tags))
    # An existing VPC the cluster uses carries its shared tag (what update adds for spec.networkID).
    theirs = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[theirs], Tags=[{"Key": T.ownership_key(name), "Value": "shared"}])

    built = inventory(clients.client, name)
    assert [k for k, ids in built.items() if not ids] == [], "a kind the cluster has is not seen"
    assert total(inventory(clients.client, f"other.{name}")) == 0, "another cluster's inventory sees this one"

    result = delete_resources(clients, name, timeout=60)
    assert result.ok, result.remaining
    assert {k: v for k, v in present(inventory(clients.client, name)).items() if k in KINDS} == {}
    assert ec2.describe_vpcs(VpcIds=[theirs])["Vpcs"][0].get("Tags", []) == [], "the shared tag is taken off, the VPC kept"


@pytest.mark.slow  # moto loads EC2
def test_either_tagging_scheme_counts(mocked: None) -> None:
    """``KubernetesCluster=<name>`` alone (what controllers put on what they make) is the cluster's too."""
    import boto3

    ec2 = boto3.client("ec2", region_name="us-east-1")
    legacy = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": "KubernetesCluster", "Value": "a.example.com"}]}])["VolumeId"]
    owned = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": "kubernetes.io/cluster/a.example.com", "Value": "owned"},
                                            {"Key": "KubernetesCluster", "Value": "a.example.com"}]}])["VolumeId"]
    ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": "kubernetes.io/cluster/a.example.com", "Value": "shared"}]}])

    def boto(service: str) -> object:
        return boto3.client(service, region_name="us-east-1")

    assert inventory(boto, "a.example.com")["Volume"] == sorted([legacy, owned])  # each once; "shared" is not the cluster's

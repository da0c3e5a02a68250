"""A private topology applied to in-process moto and deleted again: Private and Utility subnets
with their load-balancer role tags, a NAT gateway and Elastic IP per zone (or one for all),
private route tables to them, no public IP on the cluster's launch templates, and zero left
after delete (NAT gateways and addresses included). Reruns adopt what an earlier run made."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
import yaml
from goldenkit import inputs_for

from inventory import inventory, present, total
from kopsy.cloud.aws.session import AwsClients
from kopsy.reconcile.delete import delete_resources
from kopsy.reconcile.update import apply_update, plan_update
from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.model import cluster_to_dict, instance_group_to_dict

NAME = "priv.example.com"


def _spec(nat: str) -> str:
    cluster, groups = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a", "us-east-1b"], topology="private", nat=nat))
    return yaml.safe_dump_all([cluster_to_dict(cluster)] + [instance_group_to_dict(g) for g in groups])


def _apply(clients: AwsClients, nat: str) -> None:
    planned = plan_update(clients, inputs_for(_spec(nat)))
    result = apply_update(clients, planned, retry_timeout=30)
    assert result.ok, result.failed


def _tags(item: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


@pytest.fixture
def clients(mocked: None) -> AwsClients:
    c = AwsClients("us-east-1", session=boto3.session.Session(region_name="us-east-1"))
    c.client("s3").create_bucket(Bucket="golden-state")
    return c


@pytest.mark.slow
@pytest.mark.parametrize("nat, gateways", [("per-zone", 2), ("single", 1)])
def test_private_topology_applies_and_deletes_to_zero(clients: AwsClients, nat: str, gateways: int) -> None:
    _apply(clients, nat)
    ec2 = clients.client("ec2")
    found = inventory(clients.client, NAME)
    assert len(found["NatGateway"]) == gateways and len(found["ElasticIP"]) == gateways
    subnets = {_tags(s)["Name"]: s for s in ec2.describe_subnets(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]}])["Subnets"]}
    for zone in ("us-east-1a", "us-east-1b"):
        assert _tags(subnets[f"{zone}.{NAME}"]).get("kubernetes.io/role/internal-elb") == "1"
        assert _tags(subnets[f"utility-{zone}.{NAME}"]).get("kubernetes.io/role/elb") == "1"
        assert not subnets[f"{zone}.{NAME}"]["MapPublicIpOnLaunch"]
    nats = {g["NatGatewayId"]: g for g in ec2.describe_nat_gateways()["NatGateways"] if g["State"] == "available"}
    assert {g["SubnetId"] for g in nats.values()} <= {subnets[f"utility-{z}.{NAME}"]["SubnetId"] for z in ("us-east-1a", "us-east-1b")}
    # Each Private subnet's route table sends 0.0.0.0/0 to a NAT gateway of the cluster.
    tables = ec2.describe_route_tables(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]}])["RouteTables"]
    for zone in ("us-east-1a", "us-east-1b"):
        sid = subnets[f"{zone}.{NAME}"]["SubnetId"]
        (table,) = [t for t in tables if any(a.get("SubnetId") == sid for a in t["Associations"])]
        (default,) = [r for r in table["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"]
        assert default.get("NatGatewayId") in nats
    # No public IP on any cluster launch template.
    for lt in found["LaunchTemplate"]:
        (v,) = ec2.describe_launch_template_versions(LaunchTemplateId=lt, Versions=["$Latest"])["LaunchTemplateVersions"]
        assert v["LaunchTemplateData"]["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is False
    # Internet-facing NLB in the Utility subnets, internal one in the Private ones.
    elb = clients.client("elbv2")
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        names = {_tags(s)["Name"] for s in ec2.describe_subnets(SubnetIds=[z["SubnetId"] for z in lb["AvailabilityZones"]])["Subnets"]}
        want = "utility-" if lb["Scheme"] == "internet-facing" else ""
        assert all(n.startswith(want) if want else not n.startswith("utility-") for n in names), (lb["Scheme"], names)

    # A second run changes nothing: the NAT gateways and addresses are found by their tags.
    again = plan_update(clients, inputs_for(_spec(nat)))
    assert not again.plan.changes, [(c.action, c.kind, c.name) for c in again.plan.changes]

    result = delete_resources(clients, NAME, timeout=60)
    assert result.ok, result.errors
    assert total(inventory(clients.client, NAME)) == 0, present(inventory(clients.client, NAME))


@pytest.mark.slow
def test_rerun_after_a_crash_adopts_the_nat_gateway(clients: AwsClients) -> None:
    """moto ignores CreateNatGateway's ClientToken: a gateway a crashed run created (tagged at
    creation) is found by its tags on the rerun, never created twice; its address likewise."""
    planned = plan_update(clients, inputs_for(_spec("single")))
    ec2 = clients.client("ec2")
    # The crash: the first run got as far as allocating the address, nothing after.
    eip_want = next(c.desired for c in planned.plan.changes if c.kind == "ElasticIP")
    nat_want = next(c.desired for c in planned.plan.changes if c.kind == "NatGateway")
    from kopsy.cloud.aws import tags as T

    alloc = ec2.allocate_address(Domain="vpc", TagSpecifications=T.tag_spec("elastic-ip", eip_want.tags))["AllocationId"]
    _apply(clients, "single")
    addresses = inventory(clients.client, NAME)["ElasticIP"]
    assert addresses == [alloc]
    assert len(inventory(clients.client, NAME)["NatGateway"]) == 1
    assert nat_want.tags["Name"] in {_tags(g).get("Name") for g in ec2.describe_nat_gateways()["NatGateways"]}
    assert delete_resources(clients, NAME, timeout=60).ok
    assert total(inventory(clients.client, NAME)) == 0


@pytest.mark.slow
def test_a_repeated_create_adopts_the_gateway_it_left(clients: AwsClients) -> None:
    """A create whose answer was lost, tried again: the gateway of that name already in the
    subnet (pending or available, tagged at creation) is taken, not a second one made."""
    from kopsy.cloud.aws.nat import NatGateway
    from kopsy.reconcile.values import ApplyContext

    _apply(clients, "single")
    ec2 = clients.client("ec2")
    (gateway,) = [g for g in ec2.describe_nat_gateways()["NatGateways"] if g["State"] == "available"]
    from kopsy.reconcile.desired import desired_resources

    want = next(d for d in desired_resources(inputs_for(_spec("single"))) if d.kind == "NatGateway")
    fields = {"subnet": gateway["SubnetId"], "allocation": gateway["NatGatewayAddresses"][0]["AllocationId"]}
    again = NatGateway().create(ApplyContext(clients, NAME), want, fields)
    assert again["id"] == gateway["NatGatewayId"]
    assert len([g for g in ec2.describe_nat_gateways()["NatGateways"] if g["State"] != "deleted"]) == 1


def test_plan_shows_nat_gateways_and_addresses() -> None:
    text = (Path(__file__).parent / "golden" / "private-topology" / "expected.txt").read_text()
    assert text.count("NatGateway/") == 2 and text.count("ElasticIP/") == 2


@pytest.mark.slow
def test_private_topology_in_an_existing_vpc_keeps_the_vpc_and_its_gateway(clients: AwsClients) -> None:
    """``spec.networkID`` with a private topology: kopsy carves its Private and Utility subnets
    from the VPC's free space, makes its NAT gateways there, tags the VPC shared, and on delete
    leaves the VPC and its internet gateway as they were."""
    from kopsy.cloud.aws.existing import read_network

    ec2 = clients.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.50.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.50.32.0/19", AvailabilityZone="us-east-1a")  # someone else's
    net = read_network(clients, vpc)
    cluster, groups = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a", "us-east-1b"], topology="private", network_id=vpc,
                                                network_cidr=net.cidr, taken_cidrs=[s.cidr for s in net.subnets.values()]))
    assert [s.cidr for s in cluster.subnets] == ["10.50.64.0/19", "10.50.96.0/19", "10.50.4.0/22", "10.50.8.0/22"]
    spec = yaml.safe_dump_all([cluster_to_dict(cluster)] + [instance_group_to_dict(g) for g in groups])
    result = apply_update(clients, plan_update(clients, inputs_for(spec)), retry_timeout=30)
    assert result.ok, result.failed
    assert [v["VpcId"] for v in ec2.describe_vpcs(Filters=[{"Name": "cidr", "Values": ["10.50.0.0/16"]}])["Vpcs"]] == [vpc]
    assert len(inventory(clients.client, NAME)["NatGateway"]) == 2
    assert {"Key": f"kubernetes.io/cluster/{NAME}", "Value": "shared"} in ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["Tags"]
    assert not plan_update(clients, inputs_for(spec)).plan.changes

    assert delete_resources(clients, NAME, timeout=60).ok
    assert total(inventory(clients.client, NAME)) == 0, present(inventory(clients.client, NAME))
    assert ec2.describe_internet_gateways(InternetGatewayIds=[igw])["InternetGateways"][0]["Attachments"][0]["VpcId"] == vpc
    assert len(ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]) == 1  # theirs, kept


def test_private_groups_launch_after_their_nat_route_and_nothing_else_waits() -> None:
    """Only the route needs the NAT gateway (available), and only the groups in Private subnets
    need the route; templates, load balancers and the bastion's group do not wait for either."""
    from kopsy.reconcile.desired import desired_resources

    desired = {d.key: d for d in desired_resources(inputs_for(_spec("per-zone")))}
    nodes = desired[("AutoScalingGroup", f"nodes.{NAME}")]
    assert {k for k in nodes.deps() if k[0] == "RouteTable"} == {
        ("RouteTable", f"private-utility-us-east-1a.{NAME}"), ("RouteTable", f"private-utility-us-east-1b.{NAME}")}
    nat_side = {k for k in desired if k[0] in ("NatGateway", "ElasticIP", "RouteTable")}
    waiting = sorted(d.name for d in desired.values() if d.deps() & nat_side and d.kind not in ("NatGateway", "RouteTable"))
    assert waiting == sorted(n for (kind, n) in desired if kind == "AutoScalingGroup"), waiting

"""A cluster in an existing VPC (``--network-id``), against moto server with the real kopsy:
the VPC is made beforehand with boto3, with an internet gateway and a subnet of its own.
After ``update --yes`` there is no second VPC, the VPC (and a subnet named with ``--subnets``)
carries the cluster's ``shared`` tag, kopsy's new subnet is carved from free space; after
``delete --yes`` the VPC, its gateway, its route table and the named subnet still exist and the
``shared`` tag is gone. Bad networks are refused with one line naming the problem."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import register_image

from tests.inventory import inventory, present, total

pytestmark = pytest.mark.e2e

NAME = "existing.example.com"
SHARED = f"kubernetes.io/cluster/{NAME}"


def _vpc(ec2: Any, *, hostnames: bool = True, gateway: bool = True) -> tuple[str, str, str]:
    """A user's VPC 10.40.0.0/16: (vpc, its subnet in us-east-1a, its internet gateway or "")."""
    vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
    if hostnames:
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    igw = ""
    if gateway:
        igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
        ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.32.0/19", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    return vpc, subnet, igw


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def test_existing_vpc_is_shared_never_changed_and_kept_on_delete(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path],
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    ec2 = boto("ec2")
    image = register_image(boto)
    vpc, theirs, igw = _vpc(ec2)
    vpcs_before = {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    r = run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a,us-east-1b", "--node-count", "1", "--image", image,
                   "--ssh-public-key", str(ssh_keypair[1]), "--network-id", vpc, "--subnets", theirs], env)
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr

    assert {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} == vpcs_before, "a second VPC was made"
    assert _tags(ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]).get(SHARED) == "shared"
    subnets = {s["SubnetId"]: s for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]}
    assert _tags(subnets[theirs]) == {SHARED: "shared"}, "the named subnet gets the shared tag and nothing else"
    (mine,) = [s for s in subnets.values() if _tags(s).get(SHARED) == "owned"]
    assert mine["AvailabilityZone"] == "us-east-1b" and mine["CidrBlock"] == "10.40.64.0/19"  # the first free /19 after theirs
    tables = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]
    (ours,) = [t for t in tables if _tags(t).get(SHARED) == "owned"]
    assert {a.get("SubnetId") for a in ours["Associations"]} == {mine["SubnetId"]}, "their subnet keeps its own routes"
    assert {r.get("GatewayId") for r in ours["Routes"] if r.get("DestinationCidrBlock") == "0.0.0.0/0"} == {igw}
    assert ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"][0][
        "InternetGatewayId"] == igw
    r = run_kopsy(["update", "cluster", NAME], env)
    assert "No changes need to be applied" in r.stdout, r.stdout

    r = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    left = inventory(boto, NAME)
    assert total(left) == 0, present(left)
    assert SHARED not in _tags(ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0])
    assert theirs in {s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]}
    assert SHARED not in _tags(ec2.describe_subnets(SubnetIds=[theirs])["Subnets"][0])
    assert ec2.describe_internet_gateways(InternetGatewayIds=[igw])["InternetGateways"][0]["Attachments"][0]["VpcId"] == vpc


@pytest.mark.parametrize("problem", ["dns-hostnames", "no-gateway", "other-vpc", "other-zone"])
def test_a_network_kopsy_cannot_use_is_refused_in_one_line(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], problem: str,
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    ec2 = boto("ec2")
    vpc, theirs, _ = _vpc(ec2, hostnames=problem != "dns-hostnames", gateway=problem != "no-gateway")
    name = f"{problem}.example.com"
    args = ["create", "cluster", name, "--zones", "us-east-1a,us-east-1b", "--ssh-public-key", str(ssh_keypair[1]),
            "--network-id", vpc, "--image", register_image(boto)]
    if problem == "other-vpc":
        other, elsewhere, _ = _vpc(ec2)
        args += ["--subnets", elsewhere]
        want = f"subnet {elsewhere} is in VPC {other}, not in {vpc}"
    elif problem == "other-zone":
        args[4] = "us-east-1b"  # their subnet is in us-east-1a
        args += ["--subnets", theirs]
        want = f"subnet {theirs} is in zone us-east-1a, which is not one of --zones us-east-1b"
    r = run_kopsy(args, env)
    if problem in ("other-vpc", "other-zone"):
        assert r.returncode == 1 and want in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        return
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["update", "cluster", name, "--yes"], env)
    assert r.returncode == 1, r.stdout + r.stderr
    want = "has DNS hostnames off" if problem == "dns-hostnames" else "has no internet gateway"
    error = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(error) == 1 and want in error[0], r.stderr
    assert total(inventory(boto, name)) == 0, "nothing was made before the refusal"

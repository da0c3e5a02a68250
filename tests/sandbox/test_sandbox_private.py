"""The private topology end to end in the sandbox (moto server + one sshd per instance):
``create --topology private --bastion`` over two zones, ``update --yes``, then what AWS would
hold (NAT gateways and Elastic IPs, Private and Utility subnets, NAT routes, no public IP on a
cluster launch template, SSH from ``sshAccess`` to the bastion only), ``validate`` through the
bastion it finds by its tags, and ``delete --yes`` down to zero. Once per NAT mode."""

from __future__ import annotations

import base64
import subprocess
from typing import Any

import pytest
from sandbox_helpers import Sandbox

from tests.inventory import inventory, present, total

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SSH = "198.51.100.0/24"  # a CIDR value in the spec only: nothing connects to it


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def _ssh_sources(ec2: Any, group: str) -> set[str]:
    perms = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    return {r.get("CidrIp") or r.get("GroupId") for p in perms if p.get("FromPort") == 22
            for r in p.get("IpRanges", []) + p.get("UserIdGroupPairs", [])}


@pytest.mark.parametrize("nat, gateways", [("per-zone", 2), ("single", 1)])
def test_private_topology_with_a_bastion_validates_through_it_and_deletes_to_zero(sb: Sandbox, nat: str, gateways: int) -> None:
    name = f"private-{nat}.example.com"
    _ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a,us-east-1b", "--node-count", "1", "--topology", "private",
                 "--nat", nat, "--bastion", "--ssh-access", SSH, "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    plan = _ok(sb.kopsy("update", "cluster", name))
    assert plan.count("NatGateway/") == gateways and plan.count("ElasticIP/") == gateways, plan
    _ok(sb.kopsy("update", "cluster", name, "--yes"))

    c = sb.clients()
    ec2 = c.client("ec2")
    found = inventory(c.client, name)
    assert len(found["NatGateway"]) == gateways and len(found["ElasticIP"]) == gateways
    mine = [{"Name": "tag:kopsy.io/cluster", "Values": [name]}]
    subnets = {_tags(s)["Name"]: s for s in ec2.describe_subnets(Filters=mine)["Subnets"]}
    assert sorted(_tags(s)["SubnetType"] for s in subnets.values()) == ["Private", "Private", "Utility", "Utility"]
    nats = {g["NatGatewayId"] for g in ec2.describe_nat_gateways()["NatGateways"] if g["State"] == "available" and _tags(g).get("kopsy.io/cluster") == name}
    for table in ec2.describe_route_tables(Filters=mine)["RouteTables"]:
        routes = {r.get("DestinationCidrBlock"): r.get("NatGatewayId") or r.get("GatewayId") for r in table["Routes"]}
        assert routes["0.0.0.0/0"].startswith("igw-") or routes["0.0.0.0/0"] in nats
    # Only the bastion's template asks for a public IP.
    public = {}
    for t in ec2.describe_launch_templates(Filters=mine)["LaunchTemplates"]:
        v = ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"], Versions=["$Latest"])["LaunchTemplateVersions"][0]
        public[t["LaunchTemplateName"]] = v["LaunchTemplateData"]["NetworkInterfaces"][0]["AssociatePublicIpAddress"]
        if t["LaunchTemplateName"].startswith("bastions."):
            data = v["LaunchTemplateData"]
            assert "IamInstanceProfile" not in data and b"stateStore" not in base64.b64decode(data["UserData"])
    assert {k for k, v in public.items() if v} == {f"bastions.{name}"}, public
    # SSH from the SSH range to the bastion only; the cluster's instances admit the bastion's group.
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(Filters=mine)["SecurityGroups"]}
    assert _ssh_sources(ec2, groups[f"bastion.{name}"]) == {SSH}
    for role in ("control-plane", "nodes"):
        assert _ssh_sources(ec2, groups[f"{role}.{name}"]) == {groups[f"bastion.{name}"]}

    r = sb.kopsy("validate", "cluster", name, "--wait", "90s", "--interval", "1s", timeout=150)
    assert r.returncode == 0 and f"Your cluster {name} is ready" in r.stdout, r.stdout + r.stderr
    assert "through bastion" in r.stderr, r.stderr

    _ok(sb.kopsy("delete", "cluster", name, "--yes", timeout=180))
    left = inventory(c.client, name)
    assert total(left) == 0, present(left)


def test_without_a_bastion_private_instances_cannot_be_reached(sb: Sandbox) -> None:
    """AWS routes no packet from outside the VPC to a private address: the sandbox maps such an
    instance only behind a bastion, so validate fails closed and says what would reach it."""
    name = "private-nobastion.example.com"
    _ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a", "--node-count", "1", "--topology", "private",
                 "--nat", "single", "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    _ok(sb.kopsy("update", "cluster", name, "--yes"))
    r = sb.kopsy("validate", "cluster", name)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "it has only a private address: reach it through a bastion" in r.stdout + r.stderr, r.stdout + r.stderr
    ssh_config = sb.layout.ssh_config.read_text()
    assert "ProxyJump" not in ssh_config and not any(line.startswith("Host 172.20.") for line in ssh_config.splitlines())
    _ok(sb.kopsy("delete", "cluster", name, "--yes", timeout=180))

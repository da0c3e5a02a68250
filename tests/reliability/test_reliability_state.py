"""Damaged state and a changed world: truncated or garbage state-store objects, a store written
by a newer kopsy, credentials that expire (before or during a run), and a VPC deleted behind
kopsy's back. Each is either handled or refused in one actionable line — never a traceback,
never a half-written store."""

from __future__ import annotations

import re

import pytest
from reliability_support import BUCKET, CLUSTER, Baseline, Cloud, one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable against moto behind the fault proxy


def refused(r: object, *must: str) -> str:
    code, out, err = r.returncode, r.stdout, r.stderr  # type: ignore[attr-defined]
    assert code in (1, 2), f"exit {code}: {out[-400:]} {err[-400:]}"
    errors = one_error_line(err)
    assert len(errors) == 1, err
    assert "Traceback" not in out + err
    assert not re.match(r"Error: unexpected \w+:", errors[0]), errors[0]
    for text in must:
        assert text.lower() in errors[0].lower(), errors[0]
    return errors[0]


def damage(cloud: Cloud, rel: str, how: str) -> None:
    key = f"{CLUSTER}/{rel}"
    s3 = cloud.boto("s3")
    data = cloud.store_objects(key)[key] if how != "lock" else b""
    body = {"half": data[: len(data) // 2], "empty": b"", "garbage": b"\xff\xfe\x00garbage\x80",
            "lock": b'{"holder": "someone@el'}[how]
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


# how the error line must name the damaged object
NAMED = {"pki/ca.crt": "CA certificate", "lock": f"{CLUSTER}/lock", "ssh/public/admin": "ssh"}
@pytest.mark.parametrize(("rel", "how"), [
    ("config", "half"), ("config", "empty"), ("config", "garbage"),
    ("instancegroup/nodes", "half"), ("instancegroup/control-plane-us-east-1a", "garbage"),
    ("pki/ca.crt", "half"), ("ssh/public/admin", "garbage"), ("lock", "lock"),
])
def test_a_damaged_state_object_is_refused_in_one_line(fresh: Cloud, rel: str, how: str) -> None:
    damage(fresh, rel, how)
    before = fresh.store_objects()
    commands = [["update", "cluster", CLUSTER, "--yes"]]
    if rel == "config":
        commands += [["get", "cluster", CLUSTER, "-o", "yaml"], ["update", "cluster", CLUSTER]]
    elif rel.startswith("instancegroup/"):
        commands += [["get", "instancegroups", "--name", CLUSTER], ["update", "cluster", CLUSTER]]
    for args in commands:
        r = fresh.kopsy(args)
        refused(r, NAMED.get(rel, rel))
        assert fresh.store_objects() == before, f"{args} changed the store"
    assert fresh.inventory().total() == 0, "nothing may be built from a damaged spec"


@pytest.mark.parametrize("version", ["kopsy.io/v1alpha2", "kopsy.io/v2"])
@pytest.mark.parametrize("rel", ["config", "instancegroup/nodes"])
def test_a_store_from_a_newer_kopsy_asks_for_an_upgrade(fresh: Cloud, baseline: Baseline, version: str, rel: str) -> None:
    key = f"{CLUSTER}/{rel}"
    text = baseline.store[key].decode()
    assert "apiVersion: kopsy.io/v1alpha1" in text
    fresh.boto("s3").put_object(Bucket=BUCKET, Key=key, Body=text.replace("kopsy.io/v1alpha1", version).encode())
    before = fresh.store_objects()
    reader = ["get", "cluster", CLUSTER] if rel == "config" else ["get", "instancegroups", "--name", CLUSTER]
    editor = ["edit", "cluster", CLUSTER] if rel == "config" else ["edit", "instancegroup", "nodes", "--name", CLUSTER]
    for args in (reader, ["update", "cluster", CLUSTER, "--yes"], editor):
        line = refused(fresh.kopsy(args))
        assert "newer" in line or "upgrade" in line, line
    assert fresh.store_objects() == before
    assert fresh.inventory().total() == 0


def test_expired_credentials_are_named_and_nothing_is_written(fresh: Cloud) -> None:
    fresh.proxy.expired_credentials = True
    before = fresh.store_objects()
    for args in (["get", "clusters"], ["update", "cluster", CLUSTER, "--yes"], ["delete", "cluster", CLUSTER, "--yes"]):
        refused(fresh.kopsy(args), "expired")
    fresh.proxy.expired_credentials = False
    assert fresh.store_objects() == before
    assert fresh.inventory().total() == 0


@pytest.mark.parametrize("k", [12, 30, 50])
def test_credentials_expiring_mid_update_then_refreshed_converges(fresh: Cloud, baseline: Baseline, k: int) -> None:
    fresh.proxy.expire_after(k)
    refused(fresh.kopsy(["update", "cluster", CLUSTER, "--yes"]), "expired")
    fresh.proxy.expire_after(None)  # the user refreshed their session
    r = fresh.kopsy(["update", "cluster", CLUSTER, "--yes"])
    if r.returncode != 0:  # the lock could not be released with expired credentials
        refused(r, "is locked by", "--force-unlock")
        r = fresh.kopsy(["update", "cluster", CLUSTER, "--yes", "--force-unlock"])
    assert r.returncode == 0, r.stderr
    inv = fresh.inventory()
    assert inv.duplicates() == {} and inv.shape() == baseline.inventory.shape()


def delete_vpc_like_the_console(cloud: Cloud) -> str:
    """What deleting a VPC in the AWS console does: its load balancers and target groups go first
    (the console insists), then security groups, subnets, route tables and the gateway. The
    auto scaling groups, launch templates, instances and IAM stay."""
    ec2, elb = cloud.boto("ec2"), cloud.boto("elbv2")
    (vpc,) = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if not v.get("IsDefault")]
    flt = [{"Name": "vpc-id", "Values": [vpc]}]
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        if lb["VpcId"] == vpc:
            elb.delete_load_balancer(LoadBalancerArn=lb["LoadBalancerArn"])
    for tg in elb.describe_target_groups()["TargetGroups"]:
        if tg["VpcId"] == vpc:
            elb.delete_target_group(TargetGroupArn=tg["TargetGroupArn"])
    groups = [g for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"] if g["GroupName"] != "default"]
    for g in groups:
        if g["IpPermissions"]:
            ec2.revoke_security_group_ingress(GroupId=g["GroupId"], IpPermissions=g["IpPermissions"])
    for g in groups:
        ec2.delete_security_group(GroupId=g["GroupId"])
    for t in ec2.describe_route_tables(Filters=flt)["RouteTables"]:
        if any(a.get("Main") for a in t["Associations"]):
            continue
        for a in t["Associations"]:
            ec2.disassociate_route_table(AssociationId=a["RouteTableAssociationId"])
        ec2.delete_route_table(RouteTableId=t["RouteTableId"])
    for s in ec2.describe_subnets(Filters=flt)["Subnets"]:
        ec2.delete_subnet(SubnetId=s["SubnetId"])
    for g in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vpc]}])["InternetGateways"]:
        ec2.detach_internet_gateway(InternetGatewayId=g["InternetGatewayId"], VpcId=vpc)
        ec2.delete_internet_gateway(InternetGatewayId=g["InternetGatewayId"])
    ec2.delete_vpc(VpcId=vpc)
    return vpc


def test_a_vpc_deleted_under_a_live_spec_is_rebuilt_or_explained(built: Cloud, baseline: Baseline) -> None:
    old_vpc = delete_vpc_like_the_console(built)
    plan = built.kopsy(["update", "cluster", CLUSTER])
    assert plan.returncode == 0, plan.stderr
    assert "Will create resources:" in plan.stdout and "VPC" in plan.stdout, plan.stdout

    r = built.kopsy(["update", "cluster", CLUSTER, "--yes"])
    if r.returncode != 0:  # a failure must say why, and doing what it says must work
        line = refused(r)
        if "re-run" in line:
            r = built.kopsy(["update", "cluster", CLUSTER, "--yes"])
            assert r.returncode == 0, f"the error said to re-run, but the re-run fails too: {one_error_line(r.stderr)}"
        else:
            return
    again = built.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert again.returncode == 0 and "No changes need to be applied" in again.stdout, again.stdout + again.stderr
    inv = built.inventory()
    assert inv.duplicates() == {}
    assert inv.counts() == baseline.inventory.counts()
    ec2, asg = built.boto("ec2"), built.boto("autoscaling")
    (vpc,) = inv.ids["vpc"]
    assert vpc != old_vpc
    subnets = {s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]}
    groups = {g["GroupId"] for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]}
    for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]:
        assert set(g["VPCZoneIdentifier"].split(",")) <= subnets, f"{g['AutoScalingGroupName']} still points at deleted subnets"
        lt = g["LaunchTemplate"]
        data = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"], Versions=[lt.get("Version", "$Latest")])[
            "LaunchTemplateVersions"][0]["LaunchTemplateData"]
        sg_ids = set(data.get("SecurityGroupIds", [])) | {s for n in data.get("NetworkInterfaces", []) for s in n.get("Groups", [])}
        assert sg_ids and sg_ids <= groups, f"{lt} still names deleted security groups"

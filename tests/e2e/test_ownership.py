"""What Kubernetes' controllers create for the cluster is the cluster's, not kopsy's.

The AWS cloud-controller-manager tags what it makes for a ``LoadBalancer`` Service with the
cluster's ownership tag (``kubernetes.io/cluster/<name>=owned``, plus ``KubernetesCluster``)
but not with kopsy's own ``kopsy.io/cluster``: ``update`` must neither plan nor touch those,
and ``delete`` must still sweep them (docs/update.md, "What kopsy manages").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_update_support import calls, create_cluster, mutating, owned_resources, register_image, total

pytestmark = pytest.mark.e2e

NAME = "own.example.com"


def _ccm_tags(cluster: str, name: str) -> list[dict[str, str]]:
    """The tag set the cloud-controller-manager puts on what it creates."""
    return [
        {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"},
        {"Key": "KubernetesCluster", "Value": cluster},
        {"Key": "kubernetes.io/service-name", "Value": "default/hello"},
        {"Key": "Name", "Value": name},
    ]


def _make_controller_resources(boto: Callable[[str], Any]) -> dict[str, str]:
    """A ``k8s-elb-...`` security group and an NLB with its target group, as the CCM makes them."""
    ec2, elb = boto("ec2"), boto("elbv2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}])["Vpcs"][0]["VpcId"]
    subnets = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    sg_name = "k8s-elb-a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
    sg = ec2.create_security_group(
        GroupName=sg_name, Description="Security group for Kubernetes ELB a1b2c3d4 (default/hello)", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": _ccm_tags(NAME, sg_name)}],
    )["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    tg = elb.create_target_group(Name="k8s-default-hello-1a2b3c4d5e", Protocol="TCP", Port=30080, VpcId=vpc,
                                 TargetType="instance", Tags=_ccm_tags(NAME, "k8s-default-hello"))["TargetGroups"][0]["TargetGroupArn"]
    lb = elb.create_load_balancer(Name="k8s-default-hello-1a2b3c4d5e", Subnets=subnets, Type="network",
                                  Scheme="internet-facing", Tags=_ccm_tags(NAME, "k8s-default-hello"))["LoadBalancers"][0]["LoadBalancerArn"]
    elb.create_listener(LoadBalancerArn=lb, Protocol="TCP", Port=80, DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}])
    # The rules the CCM adds to the *instances'* group: NodePort traffic for the NLB (described
    # the CCM's way) and, for a classic ELB, from its k8s-elb group (no description).
    nodes = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"nodes.{NAME}"]}])["SecurityGroups"][0]["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=nodes, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 30080, "ToPort": 30080,
         "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "kubernetes.io/rule/nlb/client=a1b2c3d4e5f6"}]},
        {"IpProtocol": "tcp", "FromPort": 31000, "ToPort": 31000, "UserIdGroupPairs": [{"GroupId": sg}]},
    ])
    # A classic ELB (the CCM's default for a LoadBalancer Service), tagged by the older scheme only.
    legacy = [{"Key": "KubernetesCluster", "Value": NAME}, {"Key": "kubernetes.io/service-name", "Value": "default/web"}]
    boto("elb").create_load_balancer(
        LoadBalancerName="a0123456789abcdef0123456789abcde", Subnets=subnets[:1], SecurityGroups=[sg], Tags=legacy,
        Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstanceProtocol": "TCP", "InstancePort": 31000}])
    # A PVC's volume and its snapshot, as the EBS CSI driver tags them (--extra-tags KubernetesCluster=<name>).
    csi = [{"Key": "KubernetesCluster", "Value": NAME}, {"Key": "ebs.csi.aws.com/cluster", "Value": "true"},
           {"Key": "kubernetes.io/created-for/pvc/name", "Value": "data"},
           {"Key": "kubernetes.io/created-for/pvc/namespace", "Value": "default"}]
    vol = ec2.create_volume(AvailabilityZone="us-east-1a", Size=10, VolumeType="gp3", Encrypted=True,
                            TagSpecifications=[{"ResourceType": "volume", "Tags": csi}])["VolumeId"]
    snap = ec2.create_snapshot(VolumeId=vol, TagSpecifications=[{"ResourceType": "snapshot", "Tags": csi}])["SnapshotId"]
    return {"sg": sg, "sg_name": sg_name, "lb": lb, "tg": tg, "nodes": nodes,
            "clb": "a0123456789abcdef0123456789abcde", "volume": vol, "snapshot": snap}


def _node_rules(boto: Callable[[str], Any], group: str) -> set[tuple[int, str]]:
    perms = boto("ec2").describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    return {(p.get("FromPort", -1), r.get("CidrIp") or r.get("GroupId"))
            for p in perms for r in p.get("IpRanges", []) + p.get("UserIdGroupPairs", [])}


def _exists(boto: Callable[[str], Any], made: dict[str, str]) -> dict[str, bool]:
    ec2, elb = boto("ec2"), boto("elbv2")
    groups = {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    lbs = {lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]}
    tgs = {tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]}
    clbs = {lb["LoadBalancerName"] for lb in boto("elb").describe_load_balancers()["LoadBalancerDescriptions"]}
    vols = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    snaps = {s["SnapshotId"] for s in ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]}
    return {"sg": made["sg"] in groups, "lb": made["lb"] in lbs, "tg": made["tg"] in tgs, "clb": made["clb"] in clbs,
            "volume": made["volume"] in vols, "snapshot": made["snapshot"] in snaps}


ALL = {"sg": True, "lb": True, "tg": True, "clb": True, "volume": True, "snapshot": True}


def test_controller_resources_are_left_by_update_and_removed_by_delete(
    aws_env: dict[str, str], state_bucket: str, tmp_path: Path, boto: Callable[[str], Any],
    run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    log = tmp_path / "calls.log"
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket, "KOPSY_AWS_CALL_LOG": str(log)}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 0
    made = _make_controller_resources(boto)

    # The dry run names none of them and has nothing to do.
    plan = run_kopsy(["update", "cluster", NAME], env)
    assert plan.returncode == 0, plan.stderr
    for word in (made["sg"], made["sg_name"], "k8s-default-hello", made["lb"], made["tg"], made["clb"], made["volume"],
                 made["snapshot"]):
        assert word not in plan.stdout, plan.stdout
    assert "No changes need to be applied" in plan.stdout, plan.stdout

    # --yes leaves them as they are, with no mutating call at all.
    log.unlink()
    applied = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert applied.returncode == 0, applied.stderr
    assert mutating(calls(log)) == [], mutating(calls(log))
    assert _exists(boto, made) == ALL
    controller_rules = {(30080, "0.0.0.0/0"), (31000, made["sg"])}
    assert controller_rules <= _node_rules(boto, made["nodes"])

    # A spec change that makes kopsy revoke one of its own rules on that group (SSH from a CIDR)
    # revokes that one alone: the controller's rules stay.
    got = run_kopsy(["get", "cluster", NAME, "-o", "yaml"], env)
    assert got.returncode == 0, got.stderr
    spec = yaml.safe_load(got.stdout)
    spec["spec"]["sshAccess"] = ["198.51.100.0/24"]
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(spec))
    r = run_kopsy(["replace", "-f", str(tmp_path / "cluster.yaml")], env)
    assert r.returncode == 0, r.stderr
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 0
    rules = _node_rules(boto, made["nodes"])
    assert (22, "0.0.0.0/0") not in rules and (22, "198.51.100.0/24") in rules, rules
    assert controller_rules <= rules, rules

    # delete lists them (they are the cluster's) and removes them with everything else.
    listing = run_kopsy(["delete", "cluster", NAME], env)
    assert listing.returncode == 0, listing.stderr
    for word in (made["sg"], made["lb"], made["tg"], made["clb"], made["volume"], made["snapshot"]):
        assert word in listing.stdout, listing.stdout
    gone = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert gone.returncode == 0, gone.stderr
    assert _exists(boto, made) == {k: False for k in ALL}
    assert total(owned_resources(boto, NAME)) == 0, owned_resources(boto, NAME)


def test_a_resource_under_kopsys_name_without_kopsys_mark_is_not_adopted(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any],
    run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    """A launch template named as kopsy names the group's, carrying only the broad ownership tag
    (say, made by hand or by another tool): the create that meets it refuses to take it over,
    and leaves it as it was."""
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    ec2 = boto("ec2")
    foreign = ec2.create_launch_template(
        LaunchTemplateName=f"nodes.{NAME}", LaunchTemplateData={"InstanceType": "t3.nano"},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "team", "Value": "other"}]}],
    )["LaunchTemplate"]
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode != 0
    assert f"launch template nodes.{NAME} already exists but is not owned by cluster {NAME}" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=foreign["LaunchTemplateId"])["LaunchTemplateVersions"]
    assert [v["VersionNumber"] for v in versions] == [1]  # no version added to someone else's template
    assert run_kopsy(["delete", "cluster", NAME, "--yes"], env).returncode == 0
    assert ec2.describe_launch_templates(LaunchTemplateIds=[foreign["LaunchTemplateId"]])["LaunchTemplates"]

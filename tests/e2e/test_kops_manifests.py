"""kops' own manifests through the real CLI against moto server.

The manifests below have the shape ``kops create cluster --dry-run -o yaml`` prints (minimal, HA
over three zones, private with a bastion): create -f converts them into kopsy's spec, update
--yes builds the expected groups (and, for the private one, its NAT gateway and bastion),
delete removes everything. What kopsy cannot honour is
refused in one error listing every field path, with nothing written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_update_support import owned_resources, register_image, total

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"  # moto's account: the owner of the image register_image makes
IMAGE_NAME = "ubuntu-noble-24.04-test"


def kops_cluster(name: str, zones: list[str], *, private: bool = False) -> dict[str, Any]:
    """A Cluster as kops create cluster --dry-run -o yaml prints it (calico)."""
    subnets: list[dict[str, Any]] = [
        {"cidr": f"172.20.{32 * (i + 1)}.0/19", "name": z, "type": "Private" if private else "Public", "zone": z}
        for i, z in enumerate(zones)
    ]
    if private:
        subnets += [{"cidr": f"172.20.{i}.0/22", "name": f"utility-{z}", "type": "Utility", "zone": z}
                    for i, z in enumerate(zones)]
    masters = [f"control-plane-{z}" for z in zones]
    etcd = [
        {"cpuRequest": cpu, "etcdMembers": [{"encryptedVolume": True, "instanceGroup": m, "name": m[-1]} for m in masters],
         "manager": {"backupRetentionDays": 90}, "memoryRequest": "100Mi", "name": n}
        for n, cpu in (("main", "200m"), ("events", "100m"))
    ]
    topology: dict[str, Any] = {"dns": {"type": "Public"}}
    if private:
        topology.update({"masters": "private", "nodes": "private", "bastion": {"bastionPublicName": f"bastion.{name}"}})
    return {
        "apiVersion": "kops.k8s.io/v1alpha2",
        "kind": "Cluster",
        "metadata": {"creationTimestamp": None, "name": name},
        "spec": {
            "api": {"loadBalancer": {"class": "Network", "type": "Public"}},
            "authorization": {"rbac": {}},
            "channel": "stable",
            "cloudProvider": "aws",
            "configBase": f"s3://kops-state/{name}",
            "etcdClusters": etcd,
            "iam": {"allowContainerRegistry": True, "legacy": False},
            "kubelet": {"anonymousAuth": False},
            "kubernetesApiAccess": ["0.0.0.0/0", "::/0"],
            "kubernetesVersion": "v1.36.0",
            "networkCIDR": "172.20.0.0/16",
            "networking": {"calico": {}},
            "nonMasqueradeCIDR": "100.64.0.0/10",
            "sshAccess": ["0.0.0.0/0", "::/0"],
            "subnets": subnets,
            "topology": topology,
        },
    }


def kops_ig(cluster: str, name: str, role: str, zones: list[str], size: int, machine: str = "t3.medium") -> dict[str, Any]:
    return {
        "apiVersion": "kops.k8s.io/v1alpha2",
        "kind": "InstanceGroup",
        "metadata": {"creationTimestamp": None, "labels": {"kops.k8s.io/cluster": cluster}, "name": name},
        "spec": {
            "image": f"{ACCOUNT}/{IMAGE_NAME}",
            "machineType": machine,
            "maxSize": size,
            "minSize": size,
            "nodeLabels": {"kops.k8s.io/instancegroup": name},
            "role": role,
            "subnets": zones,
            **({"rootVolumeSize": 32} if role == "Node" else {}),
        },
    }


def minimal(name: str) -> list[dict[str, Any]]:
    return [kops_cluster(name, ["us-east-1a"]),
            kops_ig(name, "control-plane-us-east-1a", "Master", ["us-east-1a"], 1),
            kops_ig(name, "nodes-us-east-1a", "Node", ["us-east-1a"], 2)]


def ha(name: str) -> list[dict[str, Any]]:
    zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
    docs = [kops_cluster(name, zones)]
    docs += [kops_ig(name, f"control-plane-{z}", "ControlPlane" if z.endswith("c") else "Master", [z], 1) for z in zones]
    docs += [kops_ig(name, f"nodes-{z}", "Node", [z], 1) for z in zones]
    return docs


def private_with_bastion(name: str) -> list[dict[str, Any]]:
    zones = ["us-east-1a"]
    return [kops_cluster(name, zones, private=True),
            kops_ig(name, "control-plane-us-east-1a", "Master", zones, 1),
            kops_ig(name, "nodes-us-east-1a", "Node", zones, 1),
            kops_ig(name, "bastions", "Bastion", ["utility-us-east-1a"], 1, "t3.micro")]


def _write(tmp_path: Path, docs: list[dict[str, Any]], filename: str = "cluster.yaml") -> Path:
    path = tmp_path / filename
    path.write_text(yaml.safe_dump_all(docs, sort_keys=True))
    return path


def _store_keys(boto: Callable[[str], Any]) -> list[str]:
    return [o["Key"] for o in boto("s3").list_objects_v2(Bucket="kopsy-state").get("Contents", [])]


def _groups(boto: Callable[[str], Any], name: str) -> dict[str, dict[str, Any]]:
    groups = boto("autoscaling").describe_auto_scaling_groups(MaxRecords=100)["AutoScalingGroups"]
    return {g["AutoScalingGroupName"]: g for g in groups if g["AutoScalingGroupName"].endswith(f".{name}")}


def test_dry_run_converts_offline_into_kopsys_form(run_kopsy: Callable[..., Any], tmp_path: Path) -> None:
    path = _write(tmp_path, minimal("dry.example.com"))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    r = run_kopsy(["create", "-f", str(path), "--dry-run", "-o", "yaml"], env)
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(r.stdout))
    assert [d["apiVersion"] for d in docs] == ["kopsy.io/v1alpha1"] * 3
    cluster = docs[0]["spec"]
    assert cluster["kubernetesVersion"] == "1.36.0" and cluster["sshAccess"] == ["0.0.0.0/0"]
    assert cluster["subnets"] == [{"name": "us-east-1a", "zone": "us-east-1a", "cidr": "172.20.32.0/19", "type": "Public"}]
    roles = {d["metadata"]["name"]: d["spec"]["role"] for d in docs[1:]}
    assert roles == {"control-plane-us-east-1a": "ControlPlane", "nodes-us-east-1a": "Node"}
    assert docs[2]["spec"]["image"] == f"{ACCOUNT}/{IMAGE_NAME}" and docs[2]["spec"]["rootVolumeSize"] == 32
    notes = [line for line in r.stderr.splitlines() if line.startswith("Note: ")]
    assert any("configBase" in n for n in notes) and any("::/0" in n and "IPv6" in n for n in notes)
    assert any("etcdClusters" in n for n in notes) and any("channel" in n for n in notes)

    # networking: {cni: {}} is "bring your own CNI"
    byo = minimal("dry.example.com")
    byo[0]["spec"]["networking"] = {"cni": {}}
    r = run_kopsy(["create", "-f", str(_write(tmp_path, byo, "byo.yaml")), "--dry-run", "-o", "yaml"], env)
    assert r.returncode == 0, r.stderr
    assert next(iter(yaml.safe_load_all(r.stdout)))["spec"]["networking"] == {"cni": {}}


@pytest.mark.parametrize("shape,groups", [("minimal", 2), ("ha", 6)])
def test_kops_manifests_create_update_and_delete(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
    tmp_path: Path, shape: str, groups: int,
) -> None:
    name = f"{shape}.example.com"
    register_image(boto)
    docs = minimal(name) if shape == "minimal" else ha(name)
    r = run_kopsy(["create", "-f", str(_write(tmp_path, docs)), "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode == 0, r.stderr
    shown = list(yaml.safe_load_all(run_kopsy(["get", "cluster", name, "-o", "yaml"], env).stdout))
    assert shown[0]["apiVersion"] == "kopsy.io/v1alpha1" and shown[0]["spec"]["kubernetesVersion"] == "1.36.0"

    r = run_kopsy(["update", "cluster", name, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    asgs = _groups(boto, name)
    assert len(asgs) == groups
    igs = [d for d in docs if d["kind"] == "InstanceGroup"]
    assert set(asgs) == {f"{d['metadata']['name']}.{name}" for d in igs}
    for d in igs:
        g = asgs[f"{d['metadata']['name']}.{name}"]
        assert g["MinSize"] == g["MaxSize"] == d["spec"]["minSize"]
    image = boto("ec2").describe_images(Owners=[ACCOUNT], Filters=[{"Name": "name", "Values": [IMAGE_NAME]}])["Images"][0]
    for t in boto("ec2").describe_launch_templates(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [name]}])["LaunchTemplates"]:
        v = boto("ec2").describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"], Versions=["$Latest"])
        assert v["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"] == image["ImageId"]
    if shape == "ha":
        zones = {z for g in asgs.values() for z in g["AvailabilityZones"]}
        assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}
    assert run_kopsy(["update", "cluster", name, "--detailed-exitcode"], env).returncode == 0

    # replace -f takes the kops form too
    docs[-1]["spec"]["maxSize"] = docs[-1]["spec"]["minSize"] = 3
    r = run_kopsy(["replace", "-f", str(_write(tmp_path, docs, "changed.yaml"))], env)
    assert r.returncode == 0, r.stderr
    ig = json.loads(run_kopsy(["get", "ig", docs[-1]["metadata"]["name"], "--name", name, "-o", "json"], env).stdout)
    assert ig["spec"]["maxSize"] == 3

    r = run_kopsy(["delete", "cluster", name, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert total(owned_resources(boto, name)) == 0


def test_private_with_a_bastion_converts_and_builds_nat_and_bastion(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """kops' private topology (Private and Utility subnets, topology private, a Bastion group)
    maps onto kopsy's: the bastion's public name is dropped with a note, update builds a NAT
    gateway for the zone and the bastion in the utility subnet, delete leaves nothing."""
    name = "private.example.com"
    register_image(boto)
    path = _write(tmp_path, private_with_bastion(name))
    r = run_kopsy(["create", "-f", str(path), "--dry-run", "-o", "yaml"], env)
    assert r.returncode == 0, r.stderr
    assert "bastionPublicName dropped" in r.stderr, r.stderr
    cluster = next(iter(yaml.safe_load_all(r.stdout)))
    assert cluster["spec"]["topology"] == {"controlPlane": "private", "nodes": "private"}
    assert [s["type"] for s in cluster["spec"]["subnets"]] == ["Private", "Utility"]
    r = run_kopsy(["create", "-f", str(path), "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["update", "cluster", name, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    ec2 = boto("ec2")
    owner = [{"Name": "tag:kopsy.io/cluster", "Values": [name]}]
    assert len([g for g in ec2.describe_nat_gateways()["NatGateways"] if g["State"] == "available"
                and {"Key": "kopsy.io/cluster", "Value": name} in g.get("Tags", [])]) == 1
    groups = {g["AutoScalingGroupName"]: g for g in boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]}
    utility = {s["SubnetId"] for s in ec2.describe_subnets(Filters=owner)["Subnets"]
               if {"Key": "SubnetType", "Value": "Utility"} in s["Tags"]}
    assert set(groups[f"bastions.{name}"]["VPCZoneIdentifier"].split(",")) == utility
    r = run_kopsy(["delete", "cluster", name, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert total(owned_resources(boto, name)) == 0


def test_any_unsupported_field_is_listed_with_its_path_and_nothing_is_written(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    docs = minimal("odd.example.com")
    docs[0]["spec"]["kubeProxy"] = {"enabled": False}
    docs[0]["spec"]["kubelet"]["anonymousAuth"] = True
    docs[0]["spec"]["networking"] = {"weave": {}}
    docs[1]["spec"]["additionalUserData"] = [{"name": "x", "content": "y"}]
    docs[2]["spec"]["mixedInstancesPolicy"] = {"instances": ["t3.medium"]}
    r = run_kopsy(["create", "-f", str(_write(tmp_path, docs)), "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode != 0
    (error,) = [line for line in r.stderr.splitlines() if line.startswith("Error: ")]
    for path_ in ("document 1 (Cluster odd.example.com): spec.kubeProxy", "spec.kubelet.anonymousAuth: True",
                  "spec.networking.weave", "document 2 (InstanceGroup control-plane-us-east-1a): spec.additionalUserData",
                  "document 3 (InstanceGroup nodes-us-east-1a): spec.mixedInstancesPolicy"):
        assert path_ in error, (path_, error)
    assert "5 field(s)" in error and "nothing was written" in error
    assert _store_keys(boto) == []


def test_cloud_labels_tag_every_resource_kopsy_creates(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    name = "labels.example.com"
    register_image(boto)
    docs = minimal(name)
    labels = {"team": "platform", "cost-center": "1e3", "env": "y"}
    docs[0]["spec"]["cloudLabels"] = labels
    r = run_kopsy(["create", "-f", str(_write(tmp_path, docs)), "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode == 0, r.stderr
    shown = yaml.safe_load_all(run_kopsy(["get", "cluster", name, "-o", "yaml"], env).stdout)
    assert next(iter(shown))["spec"]["cloudLabels"] == labels
    r = run_kopsy(["update", "cluster", name, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr

    def tagged(items: Any) -> bool:
        tags = {t["Key"]: t.get("Value", "") for t in items or []}
        return labels.items() <= tags.items() and tags.get("kopsy.io/cluster") == name

    ec2, elb, asg, iam = boto("ec2"), boto("elbv2"), boto("autoscaling"), boto("iam")
    owner = [{"Name": "tag:kopsy.io/cluster", "Values": [name]}]
    found = {
        "vpc": ec2.describe_vpcs(Filters=owner)["Vpcs"],
        "subnet": ec2.describe_subnets(Filters=owner)["Subnets"],
        "igw": ec2.describe_internet_gateways(Filters=owner)["InternetGateways"],
        "route table": ec2.describe_route_tables(Filters=owner)["RouteTables"],
        "security group": ec2.describe_security_groups(Filters=owner)["SecurityGroups"],
        "key pair": ec2.describe_key_pairs(Filters=owner)["KeyPairs"],
        "launch template": ec2.describe_launch_templates(Filters=owner)["LaunchTemplates"],
        "instance": [i for r in ec2.describe_instances(Filters=owner)["Reservations"] for i in r["Instances"]],
    }
    for what, items in found.items():
        assert items and all(tagged(i.get("Tags")) for i in items), what
    groups = [g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"] if g["AutoScalingGroupName"].endswith(name)]
    assert len(groups) == 2 and all(tagged(g["Tags"]) for g in groups)
    arns = [lb["LoadBalancerArn"] for lb in elb.describe_load_balancers()["LoadBalancers"]]
    arns += [tg["TargetGroupArn"] for tg in elb.describe_target_groups()["TargetGroups"]]
    assert arns and all(tagged(d["Tags"]) for d in elb.describe_tags(ResourceArns=arns)["TagDescriptions"])
    for role in (f"control-plane.{name}", f"nodes.{name}"):
        assert tagged(iam.list_role_tags(RoleName=role)["Tags"])
        assert tagged(iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"].get("Tags"))
    assert run_kopsy(["update", "cluster", name, "--detailed-exitcode"], env).returncode == 0
    assert run_kopsy(["delete", "cluster", name, "--yes"], env).returncode == 0
    assert total(owned_resources(boto, name)) == 0


def test_cloud_labels_may_not_shadow_kopsys_own_tags(run_kopsy: Callable[..., Any], tmp_path: Path) -> None:
    docs = minimal("shadow.example.com")
    docs[0]["spec"]["cloudLabels"] = {"KubernetesCluster": "other", "kopsy.io/cluster": "other", "aws:x": "y"}
    r = run_kopsy(["create", "-f", str(_write(tmp_path, docs)), "--dry-run"], {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert r.returncode != 0
    for key in ("spec.cloudLabels.KubernetesCluster", "spec.cloudLabels.kopsy.io/cluster", "spec.cloudLabels.aws:x"):
        assert key in r.stderr


def test_additional_security_groups_are_attached_when_they_exist_and_refused_when_not(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    name = "extra-sg.example.com"
    register_image(boto)
    ec2 = boto("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    extra = ec2.create_security_group(GroupName="monitoring", Description="the user's own", VpcId=vpc)["GroupId"]
    docs = minimal(name)
    docs[2]["spec"]["additionalSecurityGroups"] = [extra, "sg-0123456789abcdef0"]
    r = run_kopsy(["create", "-f", str(_write(tmp_path, docs)), "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode == 0, r.stderr

    # one of them does not exist: refused at update, before anything is created
    r = run_kopsy(["update", "cluster", name, "--yes"], env)
    assert r.returncode != 0
    assert "instancegroup 'nodes-us-east-1a': spec.additionalSecurityGroups: sg-0123456789abcdef0 not found" in r.stderr
    assert extra not in r.stderr.split("not found")[0].split("additionalSecurityGroups:")[-1]
    owner = [{"Name": "tag:kopsy.io/cluster", "Values": [name]}]
    assert ec2.describe_vpcs(Filters=owner)["Vpcs"] == []

    docs[2]["spec"]["additionalSecurityGroups"] = [extra]
    assert run_kopsy(["replace", "-f", str(_write(tmp_path, docs, "fixed.yaml"))], env).returncode == 0
    r = run_kopsy(["update", "cluster", name, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(Filters=owner)["SecurityGroups"]}
    for t in ec2.describe_launch_templates(Filters=owner)["LaunchTemplates"]:
        v = ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"], Versions=["$Latest"])
        attached = set(v["LaunchTemplateVersions"][0]["LaunchTemplateData"]["NetworkInterfaces"][0]["Groups"])
        if t["LaunchTemplateName"].startswith("nodes-"):
            assert attached == {groups[f"nodes.{name}"], extra}
        else:
            assert attached == {groups[f"control-plane.{name}"]}
    assert run_kopsy(["update", "cluster", name, "--detailed-exitcode"], env).returncode == 0
    assert run_kopsy(["delete", "cluster", name, "--yes"], env).returncode == 0
    assert ec2.describe_security_groups(GroupIds=[extra])["SecurityGroups"]  # the user's group is left alone

"""The main job end to end through the real CLI, in the sandbox:
sandbox up -> create cluster -> update --yes -> validate -> export kubecfg -> delete --yes -> sandbox down.
Also each fault of the sandbox issue, as ``kopsy validate`` reports it (node named, reason given).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import subprocess

import pytest
from sandbox_helpers import Sandbox, clean_env, env_from_eval, wait_for

from kopsy.sandbox import procs
from tests.inventory import inventory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _owned(sb: Sandbox, cluster: str) -> dict[str, list[str]]:
    """Everything still tagged for the cluster, every kind kopsy knows (tests/inventory.py,
    read service by service), plus the cluster's objects in the state store."""
    out = inventory(sb.clients().client, cluster)
    listed = sb.clients().client("s3").list_objects_v2(Bucket=sb.info.bucket, Prefix=f"{cluster}/")
    out["state_store_objects"] = [o["Key"] for o in listed.get("Contents", [])]
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize(
    "name,flags,expected_nodes",
    [
        ("one.example.com", ["--zones", "us-east-1a", "--node-count", "2"], 3),
        ("three.example.com", ["--zones", "us-east-1a,us-east-1b,us-east-1c", "--control-plane-count", "3", "--node-count", "1"], 4),
    ],
)
def test_main_job(sb: Sandbox, name: str, flags: list[str], expected_nodes: int) -> None:
    """As a newcomer runs it: the environment from eval "$(kopsy sandbox env)", then each step,
    ending with kopsy sandbox down."""
    sb.env = env_from_eval(sb.dir, clean_env(sb.home))
    assert sb.env["AWS_ENDPOINT_URL"] == sb.info.endpoint and sb.env["KOPSY_SSH_CONFIG"] == str(sb.layout.ssh_config)
    _ok(sb.kopsy("create", "cluster", name, *flags, "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    _ok(sb.kopsy("update", "cluster", name, "--yes"))
    made = _owned(sb, name)
    assert all(made.get(k) for k in ("VPC", "Subnet", "InternetGateway", "SecurityGroup", "KeyPair", "LaunchTemplate",
                                     "AutoScalingGroup", "Instance", "LoadBalancer", "TargetGroup", "IAMRole",
                                     "IAMInstanceProfile", "state_store_objects")), made
    out = _ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "1s"))
    assert f"Your cluster {name} is ready" in out
    doc = json.loads(_ok(sb.kopsy("validate", "cluster", name, "-o", "json")))
    assert doc["failures"] == [] and len(doc["nodes"]) == expected_nodes and all(n["ready"] for n in doc["nodes"])
    _ok(sb.kopsy("export", "kubecfg", name, "--admin"))
    assert name in (sb.home / ".kube" / "config").read_text()
    _ok(sb.kopsy("delete", "cluster", name, "--yes"))
    assert _owned(sb, name) == {}
    wait_for("every sshd of the cluster to go", lambda: sb.nodes() == {})
    assert "LOCAL EMULATION" in _ok(sb.kopsy("sandbox", "down", "--dir", str(sb.dir)))
    assert procs.marked_pids(sb.info.id) == []


def test_validate_reports_each_fault_with_node_and_reason(sb: Sandbox) -> None:
    name = "faults.example.com"
    _ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a", "--node-count", "2",
                 "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    _ok(sb.kopsy("update", "cluster", name, "--yes"))
    _ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "1s"))
    nodes = {iid: n for iid, n in sb.nodes().items() if n["role"] == "Node"}
    victim = min(nodes)
    c = sb.clients()
    ec2 = c.client("ec2")
    dns = ec2.describe_instances(InstanceIds=[victim])["Reservations"][0]["Instances"][0]["PrivateDnsName"]

    # 1. a node's sshd stops: the machine is gone
    os.kill(nodes[victim]["pid"], signal.SIGTERM)
    wait_for("the node to count as down", lambda: sb.nodes()[victim]["state"] == "down")
    r = sb.kopsy("validate", "cluster", name)
    assert r.returncode == 1 and "Validation failed" in r.stdout
    assert _error_line(r.stdout, dns) and "NodeStatusUnknown" in _error_line(r.stdout, dns)
    assert "cannot be reached over SSH" in _error_line(r.stdout, dns), r.stdout
    _ok(sb.kopsy("sandbox", "start-node", "--dir", str(sb.dir), victim))
    _ok(sb.kopsy("validate", "cluster", name))

    # 2. a security-group rule removed by hand: control plane -> kubelet
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    cp_sg, node_sg = groups[f"control-plane.{name}"], groups[f"nodes.{name}"]
    # kopsy marks its rules with a description; moto (unlike AWS) wants it named to revoke a group rule
    perm = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": cp_sg, "Description": f"kopsy.io/cluster={name}"}]}]
    ec2.revoke_security_group_ingress(GroupId=node_sg, IpPermissions=perm)
    r = sb.kopsy("validate", "cluster", name)
    assert r.returncode == 1 and "10250" in _error_line(r.stdout, dns), r.stdout
    ec2.authorize_security_group_ingress(GroupId=node_sg, IpPermissions=perm)
    _ok(sb.kopsy("validate", "cluster", name))

    # 3. one byte of an addon changed in the state store after update wrote it: the first control
    # plane refuses it (its user-data pins the sha256), so the CCM does not run and no node is Ready;
    # the next update --yes puts kopsy's bytes back
    s3 = c.client("s3")
    key = f"{name}/addons/aws-ebs-csi-driver/v1.59.0.yaml"
    good = s3.get_object(Bucket=sb.info.bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=sb.info.bucket, Key=key, Body=good.replace(b"replicas: 1", b"replicas: 9"))
    r = sb.kopsy("validate", "cluster", name)
    assert r.returncode == 1, r.stdout
    assert "cloud-controller-manager is not running" in _error_line(r.stdout, dns), r.stdout
    assert "aws-ebs-csi-driver/v1.59.0.yaml has sha256" in r.stdout and "refusing it" in r.stdout, r.stdout
    _ok(sb.kopsy("update", "cluster", name, "--yes"))
    assert s3.get_object(Bucket=sb.info.bucket, Key=key)["Body"].read() == good
    _ok(sb.kopsy("validate", "cluster", name))

    # 4. a node launched with user-data tampered to point at the wrong endpoint
    lt = ec2.describe_launch_template_versions(LaunchTemplateName=f"nodes.{name}", Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    data = gzip.decompress(base64.b64decode(lt["UserData"]))
    endpoint = api_endpoint_of(data)
    tampered = data.replace(endpoint.encode(), b"wrong.example.com:443")
    tags = [{"Key": k, "Value": v} for k, v in {
        f"kubernetes.io/cluster/{name}": "owned", "KubernetesCluster": name, "kopsy.io/cluster": name,
        "kopsy.io/role": "Node", "kopsy.io/instancegroup": "nodes", "Name": f"nodes.{name}",
    }.items()]
    subnet = ec2.describe_subnets(Filters=[{"Name": f"tag:kubernetes.io/cluster/{name}", "Values": ["owned"]}])["Subnets"][0]["SubnetId"]
    bad = ec2.run_instances(
        ImageId=lt["ImageId"], InstanceType="t3.medium", MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[node_sg],
        KeyName=lt["KeyName"], UserData=tampered, TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]["InstanceId"]
    wait_for("the tampered node's sshd", lambda: sb.serving(bad))
    r = sb.kopsy("validate", "cluster", name)
    assert r.returncode == 1 and "cannot reach API endpoint wrong.example.com:443" in _error_line(r.stdout, bad), r.stdout
    ec2.terminate_instances(InstanceIds=[bad])
    _ok(sb.kopsy("delete", "cluster", name, "--yes"))
    assert _owned(sb, name) == {}


def _error_line(out: str, node: str) -> str:
    """validate's error line that names ``node`` (the reason must be on the same line as the name)."""
    errors = out.split("VALIDATION ERRORS", 1)[-1].splitlines()
    return next((line for line in errors if node in line and line.startswith(("Node ", "Machine "))), "")


def api_endpoint_of(user_data: bytes) -> str:
    from kopsy.bootstrap import parse_user_data

    return parse_user_data(user_data).apiEndpoint



"""A cluster whose API is restricted to an admin range still works: its instances reach the API
through the internal load balancer (docs/update.md, docs/sandbox.md rule 4). Checked on what
``update --yes`` made in the emulated cloud, then judged by the sandbox, which follows AWS's
route: an instance pointed at the restricted internet-facing load balancer never joins."""

from __future__ import annotations

import base64
import gzip
import subprocess
from typing import Any

import pytest
import yaml
from sandbox_helpers import Sandbox, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "restricted.example.com"
ADMIN = "203.0.113.0/24"  # a CIDR value in the spec only: nothing connects to it
SSH = "198.51.100.0/24"


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _rules(ec2: Any, group: str) -> set[tuple[int, str]]:
    perms = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["IpPermissions"]
    return {(p.get("FromPort", -1), r.get("CidrIp") or r.get("GroupId")) for p in perms
            for r in p.get("IpRanges", []) + p.get("UserIdGroupPairs", [])}


def test_a_restricted_api_still_validates_and_the_public_path_is_refused(sb: Sandbox) -> None:
    _ok(sb.kopsy("create", "cluster", NAME, "--zones", "us-east-1a", "--node-count", "1",
                 "--admin-access", ADMIN, "--ssh-access", SSH, "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    _ok(sb.kopsy("update", "cluster", NAME, "--yes"))
    c = sb.clients()
    ec2, elb = c.client("ec2"), c.client("elbv2")
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]}])["SecurityGroups"]}
    lbs = {lb["Scheme"]: lb for lb in elb.describe_load_balancers()["LoadBalancers"]}

    # The internet-facing load balancer admits only the admin range; the internal one the cluster's groups.
    assert lbs["internet-facing"]["SecurityGroups"] == [groups[f"api-elb.{NAME}"]]
    assert _rules(ec2, groups[f"api-elb.{NAME}"]) == {(443, ADMIN), (3, ADMIN)}  # HTTPS, and ICMP 3:4 for path MTU
    assert _rules(ec2, groups[f"api-internal.{NAME}"]) == {(443, groups[f"control-plane.{NAME}"]), (443, groups[f"nodes.{NAME}"])}
    # Nothing admits SSH from anywhere but the SSH range.
    ssh_sources = {src for g in groups.values() for port, src in _rules(ec2, g) if port == 22}
    assert ssh_sources == {SSH}
    # Every instance boots against the internal endpoint, with the public name in the API certificate.
    internal, public = lbs["internal"]["DNSName"], lbs["internet-facing"]["DNSName"]
    templates = ec2.describe_launch_templates(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]}])["LaunchTemplates"]
    assert len(templates) == 2
    for t in templates:
        data = ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"], Versions=["$Latest"])
        text = gzip.decompress(base64.b64decode(data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"])).decode()
        config = next(f for f in yaml.safe_load(text)["write_files"] if f["path"] == "/etc/kopsy/bootstrap-config.json")
        assert f'"apiEndpoint": "{internal}:443"' in config["content"] and f'"apiPublicHost": "{public}"' in config["content"]

    out = _ok(sb.kopsy("validate", "cluster", NAME, "--wait", "60s", "--interval", "1s"))
    assert f"Your cluster {NAME} is ready" in out

    # A node pointed at the restricted public endpoint (the defect as it was) is judged as AWS would.
    node_lt = next(t for t in templates if t["LaunchTemplateName"] == f"nodes.{NAME}")
    version = ec2.describe_launch_template_versions(LaunchTemplateId=node_lt["LaunchTemplateId"], Versions=["$Latest"])
    good = gzip.decompress(base64.b64decode(version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"])).decode()
    broken = gzip.compress(good.replace(f"{internal}:443", f"{public}:443").encode())
    subnet = ec2.describe_subnets(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]}])["Subnets"][0]["SubnetId"]
    tags = [{"Key": k, "Value": v} for k, v in {
        f"kubernetes.io/cluster/{NAME}": "owned", "kopsy.io/cluster": NAME, "KubernetesCluster": NAME,
        "kopsy.io/role": "Node", "kopsy.io/instancegroup": "nodes", "Name": f"nodes.{NAME}"}.items()]
    bad = ec2.run_instances(
        ImageId=version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"], MinCount=1, MaxCount=1,
        InstanceType="t3.medium", UserData=broken,  # type: ignore[arg-type]  # boto3 base64-encodes it
        KeyName=version["LaunchTemplateVersions"][0]["LaunchTemplateData"]["KeyName"],
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet, "AssociatePublicIpAddress": True, "Groups": [groups[f"nodes.{NAME}"]]}],
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"][0]
    dns = bad["PrivateDnsName"]
    wait_for("the broken node's stand-in", lambda: bad["InstanceId"] in sb.nodes(), timeout=30)
    r = sb.kopsy("validate", "cluster", NAME)
    assert r.returncode == 1, r.stdout + r.stderr
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("Machine") and bad["InstanceId"] in ln and dns in ln), "")
    assert "wait-for-api" in line and f"admits tcp/443 only from {ADMIN}" in line, r.stdout
    ec2.terminate_instances(InstanceIds=[bad["InstanceId"]])
    _ok(sb.kopsy("delete", "cluster", NAME, "--yes"))

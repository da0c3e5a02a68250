"""``kopsy update cluster`` end to end: the real executable against the moto server process."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import RecordingProxy, calls, create_cluster, kill_after, mutating, query_error, register_image

pytestmark = pytest.mark.e2e

NAME = "demo.example.com"


@pytest.fixture
def env(aws_env: dict[str, str], state_bucket: str, tmp_path: Path) -> dict[str, str]:
    return {**aws_env, "KOPSY_STATE_STORE": state_bucket, "KOPSY_AWS_CALL_LOG": str(tmp_path / "calls.log")}


@pytest.fixture
def cluster(env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path]) -> str:
    image = register_image(boto)
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    return image


def _tags(items: Any) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in items or []}


def _store(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(k, env[k])
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.state import open_store
    from kopsy.state.clusters import ClusterStore

    return ClusterStore(open_store(env["KOPSY_STATE_STORE"], clients=AwsClients("us-east-1")))


def test_update_builds_a_wired_cluster_and_a_second_run_changes_nothing(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dry = run_kopsy(["update", "cluster", NAME, "--detailed-exitcode"], env)
    assert dry.returncode == 2, dry.stderr
    assert "Will create resources:" in dry.stdout and "Must specify --yes to apply changes" in dry.stdout
    assert not mutating(calls(tmp_path / "calls.log")), "a dry run must not change the cloud"

    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert "kopsy validate cluster" in r.stdout and "--wait 10m" in r.stdout

    ec2, elb, asg, iam = boto("ec2"), boto("elbv2"), boto("autoscaling"), boto("iam")
    owner = [{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}]
    common = {f"kubernetes.io/cluster/{NAME}": "owned", "KubernetesCluster": NAME, "kopsy.io/cluster": NAME}

    (vpc,) = ec2.describe_vpcs(Filters=owner)["Vpcs"]
    assert common.items() <= _tags(vpc["Tags"]).items() and _tags(vpc["Tags"])["Name"] == NAME
    vid = vpc["VpcId"]
    assert ec2.describe_vpc_attribute(VpcId=vid, Attribute="enableDnsHostnames")["EnableDnsHostnames"]["Value"]
    subnets = ec2.describe_subnets(Filters=owner)["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["us-east-1a", "us-east-1b"]
    assert all(s["MapPublicIpOnLaunch"] and s["VpcId"] == vid for s in subnets)
    subnet_ids = {s["SubnetId"] for s in subnets}
    (igw,) = ec2.describe_internet_gateways(Filters=owner)["InternetGateways"]
    assert [a["VpcId"] for a in igw["Attachments"]] == [vid]
    (rt,) = ec2.describe_route_tables(Filters=owner)["RouteTables"]
    assert any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("GatewayId") == igw["InternetGatewayId"] for r in rt["Routes"])
    assert {a["SubnetId"] for a in rt["Associations"] if a.get("SubnetId")} == subnet_ids

    groups = {_tags(g["Tags"])["Name"]: g for g in ec2.describe_security_groups(Filters=owner)["SecurityGroups"]}
    assert set(groups) == {f"control-plane.{NAME}", f"nodes.{NAME}", f"api-elb.{NAME}"}
    cp, nodes, lbsg = (groups[f"{r}.{NAME}"] for r in ("control-plane", "nodes", "api-elb"))

    def rules(g: dict[str, Any]) -> set[tuple[Any, ...]]:
        out = set()
        for p in g["IpPermissions"]:
            for src in [x["CidrIp"] for x in p.get("IpRanges", [])] + [x["GroupId"] for x in p.get("UserIdGroupPairs", [])]:
                out.add((p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), src))
        return out

    assert ("tcp", 443, 443, "0.0.0.0/0") in rules(lbsg)
    assert ("tcp", 6443, 6443, lbsg["GroupId"]) in rules(cp)
    assert ("tcp", 22, 22, "0.0.0.0/0") in rules(cp) and ("tcp", 22, 22, "0.0.0.0/0") in rules(nodes)
    from_nodes = {r for r in rules(cp) if r[3] == nodes["GroupId"]}
    assert ("tcp", 1, 2378, nodes["GroupId"]) in from_nodes and ("tcp", 2382, 65535, nodes["GroupId"]) in from_nodes
    assert not any(r[0] == "tcp" and r[1] <= 2379 <= r[2] for r in from_nodes), "nodes must not reach etcd"
    assert ("-1", None, None, cp["GroupId"]) in rules(nodes) and ("-1", None, None, nodes["GroupId"]) in rules(nodes)

    (kp,) = ec2.describe_key_pairs(Filters=owner)["KeyPairs"]
    assert kp["KeyName"].startswith(f"kubernetes.{NAME}-")

    (lb,) = [x for x in elb.describe_load_balancers()["LoadBalancers"] if x["LoadBalancerName"] == "api-demo-example-com"]
    assert lb["Type"] == "network" and lb["Scheme"] == "internet-facing" and lb["SecurityGroups"] == [lbsg["GroupId"]]
    assert {z["SubnetId"] for z in lb["AvailabilityZones"]} == subnet_ids
    lb_tags = _tags(elb.describe_tags(ResourceArns=[lb["LoadBalancerArn"]])["TagDescriptions"][0]["Tags"])
    assert lb_tags["kopsy.io/role"] == "api" and common.items() <= lb_tags.items()
    (tg,) = elb.describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]
    assert (tg["Protocol"], tg["Port"], tg["HealthCheckProtocol"], tg["VpcId"]) == ("TCP", 6443, "TCP", vid)
    (ls,) = elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert (ls["Protocol"], ls["Port"]) == ("TCP", 443)
    assert ls["DefaultActions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]

    store = _store(env, monkeypatch)
    from kopsy.bootstrap import parse_user_data
    from kopsy.pki import ca_cert_hash

    ca_hash = ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))
    groups_by_name = {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
    assert set(groups_by_name) == {f"control-plane-us-east-1a.{NAME}", f"nodes.{NAME}"}
    for ig, role, size, profile, sg in (
        ("control-plane-us-east-1a", "ControlPlane", 1, f"control-plane.{NAME}", cp),
        ("nodes", "Node", 2, f"nodes.{NAME}", nodes),
    ):
        g = groups_by_name[f"{ig}.{NAME}"]
        assert (g["MinSize"], g["MaxSize"]) == (size, size)
        gtags = _tags(g["Tags"])
        assert gtags["kopsy.io/instancegroup"] == ig and gtags["kopsy.io/role"] == role
        assert all(t["PropagateAtLaunch"] for t in g["Tags"])
        assert g["TargetGroupARNs"] == ([tg["TargetGroupArn"]] if role == "ControlPlane" else [])
        lt_spec = g["LaunchTemplate"]
        assert lt_spec["LaunchTemplateName"] == f"{ig}.{NAME}"
        (v,) = ec2.describe_launch_template_versions(LaunchTemplateName=f"{ig}.{NAME}", Versions=[lt_spec["Version"]])["LaunchTemplateVersions"]
        d = v["LaunchTemplateData"]
        assert d["ImageId"] == cluster and d["IamInstanceProfile"]["Name"] == profile and d["KeyName"] == kp["KeyName"]
        assert d["MetadataOptions"]["HttpTokens"] == "required"
        assert d["NetworkInterfaces"][0]["AssociatePublicIpAddress"] and d["NetworkInterfaces"][0]["Groups"] == [sg["GroupId"]]
        ebs = d["BlockDeviceMappings"][0]["Ebs"]
        assert ebs["Encrypted"] and ebs["VolumeType"] == "gp3"
        assert {t["ResourceType"] for t in d["TagSpecifications"]} >= {"instance", "volume"}
        cfg = parse_user_data(base64.b64decode(d["UserData"]))
        assert cfg.apiEndpoint == f"{lb['DNSName']}:443" and cfg.caCertHash == ca_hash and cfg.instanceGroup == ig
        assert set(g["VPCZoneIdentifier"].split(",")) <= subnet_ids
    for role in ("control-plane", "nodes"):
        prof = iam.get_instance_profile(InstanceProfileName=f"{role}.{NAME}")["InstanceProfile"]
        assert [r["RoleName"] for r in prof["Roles"]] == [f"{role}.{NAME}"]
        assert json.dumps(iam.get_role_policy(RoleName=f"{role}.{NAME}", PolicyName=f"{role}.{NAME}")["PolicyDocument"])

    # Every resource carries the common tags and a Name (kopsy.io/role where it has one).
    tagged = {
        "vpc": ec2.describe_vpcs(Filters=owner)["Vpcs"],
        "subnet": subnets,
        "igw": ec2.describe_internet_gateways(Filters=owner)["InternetGateways"],
        "route table": ec2.describe_route_tables(Filters=owner)["RouteTables"],
        "security group": list(groups.values()),
        "key pair": ec2.describe_key_pairs(Filters=owner)["KeyPairs"],
        "launch template": ec2.describe_launch_templates(Filters=owner)["LaunchTemplates"],
        "target group": [{"Tags": elb.describe_tags(ResourceArns=[tg["TargetGroupArn"]])["TagDescriptions"][0]["Tags"]}],
        "asg": list(groups_by_name.values()),
        "iam role": [iam.get_role(RoleName=f"{r}.{NAME}")["Role"] for r in ("control-plane", "nodes")],
        "instance profile": [iam.get_instance_profile(InstanceProfileName=f"{r}.{NAME}")["InstanceProfile"] for r in ("control-plane", "nodes")],
    }
    for what, items in tagged.items():
        assert items, what
        for item in items:
            t = _tags(item.get("Tags"))
            assert common.items() <= t.items() and t.get("Name"), (what, t)
    assert {_tags(g["Tags"])["kopsy.io/role"] for g in groups.values()} == {"ControlPlane", "Node", "api"}
    assert {_tags(r["Tags"])["kopsy.io/role"] for r in tagged["iam role"]} == {"ControlPlane", "Node"}

    # The second run: nothing to do, and not a single mutating call to the cloud.
    log = tmp_path / "calls.log"
    log.unlink()
    again = run_kopsy(["update", "--yes"], env)
    assert again.returncode == 0, again.stderr
    assert "No changes need to be applied" in again.stdout
    made = calls(log)
    assert mutating(made) == []
    assert len(made) < 40, f"a no-op update made {len(made)} AWS calls"
    assert run_kopsy(["update", NAME, "--detailed-exitcode"], env).returncode == 0


def test_spec_changes_give_minimal_plans(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    store = _store(env, monkeypatch)
    from kopsy.spec.model import Subnet, replace

    nodes, etag = store.get_instance_group(NAME, "nodes")

    def plan() -> str:
        r = run_kopsy(["update", "cluster", "--detailed-exitcode"], env)
        assert r.returncode == 2, r.stdout + r.stderr
        return str(r.stdout)

    # node count: only the ASG changes
    etag = store.replace_instance_group(replace(nodes, min_size=3, max_size=3), etag)
    out = plan()
    assert "Will modify resources:\n  AutoScalingGroup/nodes.demo.example.com\n" in out
    assert "min_size: 2 -> 3" in out and "Will create" not in out and "Will delete" not in out
    blocks = [line.strip() for line in out.splitlines() if line.startswith("  ") and not line.startswith("    ")]
    assert blocks == ["AutoScalingGroup/nodes.demo.example.com"]  # one resource, nothing else
    log = tmp_path / "calls.log"
    log.unlink()
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    assert mutating(calls(log)) == [("autoscaling", "UpdateAutoScalingGroup")]
    g = boto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"nodes.{NAME}"])["AutoScalingGroups"][0]
    assert (g["MinSize"], g["MaxSize"], g["DesiredCapacity"]) == (3, 3, 3)

    # machine type: a new template version, and the ASG pointed at it
    nodes, etag = store.get_instance_group(NAME, "nodes")
    etag = store.replace_instance_group(replace(nodes, machine_type="t3.large"), etag)
    out = plan()
    assert "LaunchTemplate/nodes.demo.example.com" in out and "instance_type: t3.medium -> t3.large" in out
    assert "launch_template_version: 1 -> (known after apply)" in out and "replaced" in out
    assert "Will create" not in out and "Will delete" not in out
    etag = store.replace_instance_group(replace(nodes, machine_type="t3.medium"), etag)

    # Kubernetes version: new template versions for every group, and the plan says what changed
    c, cetag = store.get_cluster(NAME)
    cetag = store.replace_cluster(replace(c, kubernetes_version="1.36.9"), cetag)
    out = plan()
    assert f"kubernetesVersion: {c.kubernetes_version} -> 1.36.9" in out
    assert out.count("LaunchTemplate/") == 2 and "Will create" not in out and "Will delete" not in out
    store.replace_cluster(c, cetag)

    # removed instance group: its ASG and launch template go, nothing else
    store.delete_instance_group(NAME, "nodes")
    out = plan()
    assert "Will delete resources:" in out and "Will create" not in out and "Will modify" not in out
    assert "AutoScalingGroup/nodes.demo.example.com" in out and "LaunchTemplate/nodes.demo.example.com" in out
    log.unlink()
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    assert mutating(calls(log)) == [("autoscaling", "DeleteAutoScalingGroup"), ("ec2", "DeleteLaunchTemplate")]  # in this order
    assert [g["AutoScalingGroupName"] for g in boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]] == [
        f"control-plane-us-east-1a.{NAME}"]
    assert [t["LaunchTemplateName"] for t in boto("ec2").describe_launch_templates()["LaunchTemplates"]] == [
        f"control-plane-us-east-1a.{NAME}"]
    store.create_instance_group(nodes)
    assert run_kopsy(["update", "--yes"], env).returncode == 0

    # a new zone for nodes: a subnet, and the route table, LB and node ASG take it in
    c, cetag = store.get_cluster(NAME)
    store.replace_cluster(replace(c, subnets=[*c.subnets, Subnet("us-east-1c", "us-east-1c", "172.20.96.0/19")]), cetag)
    nodes, etag = store.get_instance_group(NAME, "nodes")
    store.replace_instance_group(replace(nodes, subnets=[*nodes.subnets, "us-east-1c"]), etag)
    out = plan()
    assert "Will create resources:\n  Subnet/us-east-1c.demo.example.com" in out
    for block in ("RouteTable/demo.example.com", "LoadBalancer/api.demo.example.com", "AutoScalingGroup/nodes.demo.example.com"):
        assert block in out
    assert "Will delete" not in out and "LaunchTemplate/" not in out
    j = run_kopsy(["update", "-o", "json"], env)
    doc = json.loads(j.stdout)
    assert doc["pending"] and {(c["action"], c["kind"]) for c in doc["plan"]["changes"]} == {
        ("create", "Subnet"), ("modify", "RouteTable"), ("modify", "LoadBalancer"), ("modify", "AutoScalingGroup")
    }
    applied = run_kopsy(["update", "--yes", "-o", "json"], env)
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert sorted(result["applied"]) == sorted(f"{c['kind']}/{c['name']}" for c in doc["plan"]["changes"])
    assert result["failed"] == [] and result["skipped"] == []
    assert json.loads(run_kopsy(["update", "-o", "json"], env).stdout)["pending"] is False


def test_a_killed_apply_converges_on_rerun_without_duplicates(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], tmp_path: Path
) -> None:
    from tests.conftest import KOPSY

    made = kill_after([KOPSY, "update", "--yes"], env, tmp_path / "calls.log", mutations=12)
    assert 12 <= made < 60, made
    r = run_kopsy(["update", "--yes", "--force-unlock"], env)  # the killed run left its lock behind
    assert r.returncode == 0, r.stderr
    assert "No changes need to be applied" in run_kopsy(["update"], env).stdout
    ec2 = boto("ec2")
    owner = [{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}]
    assert len(ec2.describe_vpcs(Filters=owner)["Vpcs"]) == 1
    assert len(ec2.describe_subnets(Filters=owner)["Subnets"]) == 2
    assert len(ec2.describe_internet_gateways(Filters=owner)["InternetGateways"]) == 1
    assert len(ec2.describe_route_tables(Filters=owner)["RouteTables"]) == 1
    assert len(ec2.describe_security_groups(Filters=owner)["SecurityGroups"]) == 3
    assert len(ec2.describe_launch_templates(Filters=owner)["LaunchTemplates"]) == 2
    assert len(boto("elbv2").describe_load_balancers()["LoadBalancers"]) == 1
    assert len(boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]) == 2


def _takes_client_token() -> set[str]:
    """Every EC2/IAM/ELB/Auto Scaling operation whose request has a ClientToken parameter."""
    import botocore.session

    session = botocore.session.get_session()
    out = set()
    for service in ("ec2", "iam", "elbv2", "autoscaling"):
        model = session.get_service_model(service)
        for op in model.operation_names:
            shape = model.operation_model(op).input_shape
            if shape is not None and "ClientToken" in shape.members:
                out.add(op)
    return out


def test_client_tokens_everywhere_and_iam_propagation_is_ridden_out(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    lag = query_error("ValidationError", "You must use a valid fully-formed launch template. Invalid IamInstanceProfile")
    with RecordingProxy(env["AWS_ENDPOINT_URL"]) as proxy:
        via = {**env, "AWS_ENDPOINT_URL": proxy.url}
        # IAM eventual consistency: the first two group creates are refused as AWS does right
        # after the instance profile appears; kopsy retries that error and creates each group once.
        proxy.fail["CreateAutoScalingGroup"] = [lag, lag]
        r = run_kopsy(["update", "--yes"], via)
        assert r.returncode == 0, r.stderr
        assert len(proxy.sent("CreateAutoScalingGroup")) == 4
        assert len(boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]) == 2

        store = _store(env, monkeypatch)
        from kopsy.spec.model import replace

        # An instance group removed and added back: its template is created anew with the same
        # content, and must not carry the first one's token (AWS would answer with the deleted
        # template from its idempotency cache).
        nodes, etag = store.get_instance_group(NAME, "nodes")
        store.delete_instance_group(NAME, "nodes")
        assert run_kopsy(["update", "--yes"], via).returncode == 0
        store.create_instance_group(nodes)
        assert run_kopsy(["update", "--yes"], via).returncode == 0
        first, again = [r for r in proxy.sent("CreateLaunchTemplate") if r["LaunchTemplateName"] == f"nodes.{NAME}"]
        assert first["LaunchTemplateData.UserData"] == again["LaunchTemplateData.UserData"]
        assert first["ClientToken"] != again["ClientToken"]

        nodes, etag = store.get_instance_group(NAME, "nodes")
        store.replace_instance_group(replace(nodes, machine_type="t3.large"), etag)
        assert run_kopsy(["update", "--yes"], via).returncode == 0

    # A retried request (its answer lost) must never create a second copy: every call to an API
    # that takes a ClientToken carries one.
    checked = {req["Action"] for req in proxy.requests} & _takes_client_token()
    assert {"CreateLaunchTemplate", "CreateLaunchTemplateVersion", "ModifyLaunchTemplate", "CreateRouteTable"} <= checked
    for op in sorted(checked):
        assert all(req.get("ClientToken") for req in proxy.sent(op)), f"{op} sent without a ClientToken"

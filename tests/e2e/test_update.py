"""``kopsy update cluster`` end to end: the real executable against the moto server process."""

from __future__ import annotations

import base64
import json
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


# One cluster applied once, then each property of it checked by its own test, so one failure
# does not hide the others. It gets its own moto server: the function-scoped ``aws_env`` of the
# other tests here resets the shared one.


@dataclass
class Built:
    env: dict[str, str]
    log: Path
    dry: subprocess.CompletedProcess[str]
    dry_calls: list[tuple[str, str]]
    applied: subprocess.CompletedProcess[str]
    image: str
    ca_hash: str
    boto: Callable[[str], Any]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    import boto3

    from tests.conftest import REGION, aws_environment, run, start_moto_server, write_ssh_keypair

    work = tmp_path_factory.mktemp("update-built")
    (work / "home").mkdir()
    server = start_moto_server()
    try:
        log = work / "calls.log"
        env = {**aws_environment(server.url, work / "home"), "KOPSY_STATE_STORE": "s3://kopsy-state", "KOPSY_AWS_CALL_LOG": str(log)}
        session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)

        def boto(service: str) -> Any:
            return session.client(service, endpoint_url=server.url)

        boto("s3").create_bucket(Bucket="kopsy-state")
        image = register_image(boto)
        create_cluster(run, env, NAME, write_ssh_keypair(work)[1], image)
        dry = run(["update", "cluster", NAME, "--detailed-exitcode"], env)
        dry_calls = calls(log)
        applied = run(["update", "cluster", NAME, "--yes"], env)
        with pytest.MonkeyPatch.context() as mp:
            from kopsy.pki import ca_cert_hash

            ca_hash = ca_cert_hash(_store(env, mp).get_object(NAME, "pki/ca.crt"))
        yield Built(env, log, dry, dry_calls, applied, image, ca_hash, boto)
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


OWNER = [{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}]
COMMON = {f"kubernetes.io/cluster/{NAME}": "owned", "KubernetesCluster": NAME, "kopsy.io/cluster": NAME}


@pytest.fixture(scope="module")
def ok(built: Built) -> Built:
    """The built cluster, once the apply is known to have succeeded (else every test says why)."""
    assert built.applied.returncode == 0, built.applied.stderr
    return built


def _vpc(b: Built) -> dict[str, Any]:
    (vpc,) = b.boto("ec2").describe_vpcs(Filters=OWNER)["Vpcs"]
    return vpc  # type: ignore[no-any-return]


def _subnet_ids(b: Built) -> set[str]:
    return {s["SubnetId"] for s in b.boto("ec2").describe_subnets(Filters=OWNER)["Subnets"]}


def _groups_by_name(b: Built) -> dict[str, dict[str, Any]]:
    return {_tags(g["Tags"])["Name"]: g for g in b.boto("ec2").describe_security_groups(Filters=OWNER)["SecurityGroups"]}


def _groups(b: Built) -> dict[str, dict[str, Any]]:
    """The cluster's security groups by role: control-plane, nodes, api-elb, api-internal."""
    by_name = _groups_by_name(b)
    return {r: by_name[f"{r}.{NAME}"] for r in ("control-plane", "nodes", "api-elb", "api-internal")}


def _rules(g: dict[str, Any]) -> set[tuple[Any, ...]]:
    out = set()
    for p in g["IpPermissions"]:
        for src in [x["CidrIp"] for x in p.get("IpRanges", [])] + [x["GroupId"] for x in p.get("UserIdGroupPairs", [])]:
            out.add((p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), src))
    return out


def _api_lb(b: Built) -> dict[str, Any]:
    (lb,) = [x for x in b.boto("elbv2").describe_load_balancers()["LoadBalancers"] if x["LoadBalancerName"] == "api-demo-example-com"]
    return lb  # type: ignore[no-any-return]


def _internal_lb(b: Built) -> dict[str, Any]:
    (lb,) = [x for x in b.boto("elbv2").describe_load_balancers()["LoadBalancers"] if x["LoadBalancerName"] == "api-int-demo-example-com"]
    return lb  # type: ignore[no-any-return]


def _target_group(b: Built, lb: dict[str, Any] | None = None) -> dict[str, Any]:
    (tg,) = b.boto("elbv2").describe_target_groups(LoadBalancerArn=(lb or _api_lb(b))["LoadBalancerArn"])["TargetGroups"]
    return tg  # type: ignore[no-any-return]


def test_a_dry_run_plans_creates_and_changes_nothing(built: Built) -> None:
    assert built.dry.returncode == 2, built.dry.stderr
    assert "Will create resources:" in built.dry.stdout and "Must specify --yes to apply changes" in built.dry.stdout
    assert not mutating(built.dry_calls), "a dry run must not change the cloud"


def test_the_apply_succeeds_and_says_how_to_validate(built: Built) -> None:
    assert built.applied.returncode == 0, built.applied.stderr
    assert "kopsy validate cluster" in built.applied.stdout and "--wait 10m" in built.applied.stdout


def test_the_vpc_is_named_tagged_and_has_dns_hostnames(ok: Built) -> None:
    vpc = _vpc(ok)
    assert COMMON.items() <= _tags(vpc["Tags"]).items() and _tags(vpc["Tags"])["Name"] == NAME
    attr = ok.boto("ec2").describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")
    assert attr["EnableDnsHostnames"]["Value"]


def test_one_public_subnet_per_zone_in_the_vpc(ok: Built) -> None:
    subnets = ok.boto("ec2").describe_subnets(Filters=OWNER)["Subnets"]
    assert sorted(s["AvailabilityZone"] for s in subnets) == ["us-east-1a", "us-east-1b"]
    assert all(s["MapPublicIpOnLaunch"] and s["VpcId"] == _vpc(ok)["VpcId"] for s in subnets)


def test_the_internet_gateway_is_attached_and_routes_every_subnet(ok: Built) -> None:
    ec2 = ok.boto("ec2")
    (igw,) = ec2.describe_internet_gateways(Filters=OWNER)["InternetGateways"]
    assert [a["VpcId"] for a in igw["Attachments"]] == [_vpc(ok)["VpcId"]]
    (rt,) = ec2.describe_route_tables(Filters=OWNER)["RouteTables"]
    assert any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("GatewayId") == igw["InternetGatewayId"] for r in rt["Routes"])
    assert {a["SubnetId"] for a in rt["Associations"] if a.get("SubnetId")} == _subnet_ids(ok)


def test_the_cluster_has_a_security_group_per_role(ok: Built) -> None:
    assert set(_groups_by_name(ok)) == {f"control-plane.{NAME}", f"nodes.{NAME}", f"api-elb.{NAME}", f"api-internal.{NAME}"}


def test_the_internal_load_balancer_admits_the_cluster_and_reaches_the_api(ok: Built) -> None:
    """In-cluster clients use the internal NLB, which kubernetesApiAccess never restricts."""
    g = _groups(ok)
    assert _internal_lb(ok)["Scheme"] == "internal" and _internal_lb(ok)["SecurityGroups"] == [g["api-internal"]["GroupId"]]
    assert _rules(g["api-internal"]) >= {("tcp", 443, 443, g["control-plane"]["GroupId"]), ("tcp", 443, 443, g["nodes"]["GroupId"])}
    assert ("tcp", 6443, 6443, g["api-internal"]["GroupId"]) in _rules(g["control-plane"])


def test_security_groups_open_the_api_and_ssh(ok: Built) -> None:
    g = _groups(ok)
    assert ("tcp", 443, 443, "0.0.0.0/0") in _rules(g["api-elb"])
    assert ("tcp", 6443, 6443, g["api-elb"]["GroupId"]) in _rules(g["control-plane"])
    assert ("tcp", 22, 22, "0.0.0.0/0") in _rules(g["control-plane"]) and ("tcp", 22, 22, "0.0.0.0/0") in _rules(g["nodes"])


def test_nodes_reach_the_control_plane_but_not_etcd(ok: Built) -> None:
    g = _groups(ok)
    from_nodes = {r for r in _rules(g["control-plane"]) if r[3] == g["nodes"]["GroupId"]}
    assert ("tcp", 1, 2378, g["nodes"]["GroupId"]) in from_nodes and ("tcp", 2382, 65535, g["nodes"]["GroupId"]) in from_nodes
    assert not any(r[0] == "tcp" and r[1] <= 2379 <= r[2] for r in from_nodes), "nodes must not reach etcd"


def test_nodes_take_all_traffic_from_the_cluster(ok: Built) -> None:
    g = _groups(ok)
    assert ("-1", None, None, g["control-plane"]["GroupId"]) in _rules(g["nodes"])
    assert ("-1", None, None, g["nodes"]["GroupId"]) in _rules(g["nodes"])


def test_the_key_pair_is_named_for_the_cluster(ok: Built) -> None:
    (kp,) = ok.boto("ec2").describe_key_pairs(Filters=OWNER)["KeyPairs"]
    assert kp["KeyName"].startswith(f"kubernetes.{NAME}-")


def test_the_api_load_balancer_is_a_public_nlb_over_every_subnet(ok: Built) -> None:
    lb = _api_lb(ok)
    assert lb["Type"] == "network" and lb["Scheme"] == "internet-facing" and lb["SecurityGroups"] == [_groups(ok)["api-elb"]["GroupId"]]
    assert {z["SubnetId"] for z in lb["AvailabilityZones"]} == _subnet_ids(ok)
    lb_tags = _tags(ok.boto("elbv2").describe_tags(ResourceArns=[lb["LoadBalancerArn"]])["TagDescriptions"][0]["Tags"])
    assert lb_tags["kopsy.io/role"] == "api" and COMMON.items() <= lb_tags.items()


def test_the_listener_forwards_443_to_the_api_target_group(ok: Built) -> None:
    tg = _target_group(ok)
    assert (tg["Protocol"], tg["Port"], tg["HealthCheckProtocol"], tg["VpcId"]) == ("TCP", 6443, "TCP", _vpc(ok)["VpcId"])
    (ls,) = ok.boto("elbv2").describe_listeners(LoadBalancerArn=_api_lb(ok)["LoadBalancerArn"])["Listeners"]
    assert (ls["Protocol"], ls["Port"]) == ("TCP", 443)
    assert ls["DefaultActions"][0]["TargetGroupArn"] == tg["TargetGroupArn"]


def test_one_auto_scaling_group_per_instance_group(ok: Built) -> None:
    names = {g["AutoScalingGroupName"] for g in ok.boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]}
    assert names == {f"control-plane-us-east-1a.{NAME}", f"nodes.{NAME}"}


GROUPS = [("control-plane-us-east-1a", "ControlPlane", 1, "control-plane"), ("nodes", "Node", 2, "nodes")]


@pytest.mark.parametrize("ig, role, size, sg_role", GROUPS, ids=[g[0] for g in GROUPS])
def test_the_auto_scaling_group_is_sized_tagged_and_placed(ok: Built, ig: str, role: str, size: int, sg_role: str) -> None:
    (g,) = ok.boto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ig}.{NAME}"])["AutoScalingGroups"]
    assert (g["MinSize"], g["MaxSize"]) == (size, size)
    gtags = _tags(g["Tags"])
    assert gtags["kopsy.io/instancegroup"] == ig and gtags["kopsy.io/role"] == role
    # Every tag reaches the instances but cluster-autoscaler's, which describe the group itself.
    assert all(t["PropagateAtLaunch"] for t in g["Tags"] if not t["Key"].startswith("k8s.io/cluster-autoscaler/"))
    expected = sorted([_target_group(ok)["TargetGroupArn"], _target_group(ok, _internal_lb(ok))["TargetGroupArn"]])
    assert sorted(g["TargetGroupARNs"]) == (expected if role == "ControlPlane" else [])
    assert g["LaunchTemplate"]["LaunchTemplateName"] == f"{ig}.{NAME}"
    assert set(g["VPCZoneIdentifier"].split(",")) <= _subnet_ids(ok)


@pytest.mark.parametrize("ig, role, size, sg_role", GROUPS, ids=[g[0] for g in GROUPS])
def test_the_launch_template_version_the_group_uses(ok: Built, ig: str, role: str, size: int, sg_role: str) -> None:
    from kopsy.bootstrap import parse_user_data

    ec2 = ok.boto("ec2")
    (g,) = ok.boto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[f"{ig}.{NAME}"])["AutoScalingGroups"]
    (v,) = ec2.describe_launch_template_versions(LaunchTemplateName=f"{ig}.{NAME}", Versions=[g["LaunchTemplate"]["Version"]])["LaunchTemplateVersions"]
    (kp,) = ec2.describe_key_pairs(Filters=OWNER)["KeyPairs"]
    d = v["LaunchTemplateData"]
    assert d["ImageId"] == ok.image and d["IamInstanceProfile"]["Name"] == f"{sg_role}.{NAME}" and d["KeyName"] == kp["KeyName"]
    assert d["MetadataOptions"]["HttpTokens"] == "required"
    assert d["NetworkInterfaces"][0]["AssociatePublicIpAddress"]
    assert d["NetworkInterfaces"][0]["Groups"] == [_groups(ok)[sg_role]["GroupId"]]
    ebs = d["BlockDeviceMappings"][0]["Ebs"]
    assert ebs["Encrypted"] and ebs["VolumeType"] == "gp3"
    assert {t["ResourceType"] for t in d["TagSpecifications"]} >= {"instance", "volume"}
    cfg = parse_user_data(base64.b64decode(d["UserData"]))
    assert cfg.apiEndpoint == f"{_internal_lb(ok)['DNSName']}:443" and cfg.apiPublicHost == _api_lb(ok)["DNSName"]
    assert cfg.caCertHash == ok.ca_hash and cfg.instanceGroup == ig


@pytest.mark.parametrize("role", ["control-plane", "nodes"])
def test_the_instance_profile_holds_its_role_with_an_inline_policy(ok: Built, role: str) -> None:
    iam = ok.boto("iam")
    prof = iam.get_instance_profile(InstanceProfileName=f"{role}.{NAME}")["InstanceProfile"]
    assert [r["RoleName"] for r in prof["Roles"]] == [f"{role}.{NAME}"]
    assert json.dumps(iam.get_role_policy(RoleName=f"{role}.{NAME}", PolicyName=f"{role}.{NAME}")["PolicyDocument"])


def _tagged(b: Built, what: str) -> list[dict[str, Any]]:
    ec2, elb, iam = b.boto("ec2"), b.boto("elbv2"), b.boto("iam")
    roles = ("control-plane", "nodes")
    read: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "vpc": lambda: ec2.describe_vpcs(Filters=OWNER)["Vpcs"],
        "subnet": lambda: ec2.describe_subnets(Filters=OWNER)["Subnets"],
        "igw": lambda: ec2.describe_internet_gateways(Filters=OWNER)["InternetGateways"],
        "route table": lambda: ec2.describe_route_tables(Filters=OWNER)["RouteTables"],
        "security group": lambda: list(_groups_by_name(b).values()),
        "key pair": lambda: ec2.describe_key_pairs(Filters=OWNER)["KeyPairs"],
        "launch template": lambda: ec2.describe_launch_templates(Filters=OWNER)["LaunchTemplates"],
        "target group": lambda: [{"Tags": elb.describe_tags(ResourceArns=[_target_group(b)["TargetGroupArn"]])["TagDescriptions"][0]["Tags"]}],
        "asg": lambda: b.boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"],
        "iam role": lambda: [iam.get_role(RoleName=f"{r}.{NAME}")["Role"] for r in roles],
        "instance profile": lambda: [iam.get_instance_profile(InstanceProfileName=f"{r}.{NAME}")["InstanceProfile"] for r in roles],
    }
    return read[what]()


@pytest.mark.parametrize("what", ["vpc", "subnet", "igw", "route table", "security group", "key pair", "launch template",
                                  "target group", "asg", "iam role", "instance profile"])
def test_every_resource_carries_the_common_tags_and_a_name(ok: Built, what: str) -> None:
    items = _tagged(ok, what)
    assert items, what
    for item in items:
        t = _tags(item.get("Tags"))
        assert COMMON.items() <= t.items() and t.get("Name"), (what, t)


def test_groups_and_roles_carry_their_kopsy_role(ok: Built) -> None:
    assert {_tags(g["Tags"])["kopsy.io/role"] for g in _groups_by_name(ok).values()} == {"ControlPlane", "Node", "api", "api-internal"}
    assert {_tags(r["Tags"])["kopsy.io/role"] for r in _tagged(ok, "iam role")} == {"ControlPlane", "Node"}


NOOP_CALL_BUDGET = 39  # issue 3 and 14: under 40, lock writes included


def test_a_second_run_changes_nothing_with_few_calls_and_none_mutating(ok: Built) -> None:
    """Last in the module: it runs kopsy again on the built cluster."""
    from tests.conftest import run

    ok.log.unlink(missing_ok=True)
    again = run(["update", "--yes"], ok.env)
    assert again.returncode == 0, again.stderr
    assert "No changes need to be applied" in again.stdout
    made = calls(ok.log)
    assert mutating(made) == []
    # The cluster's one listing settles the removal records, the addons and the etcd module (their
    # ETags), and the CA's certificate and key (verified.json holds their ETags); the spec, the SSH
    # key and verified.json come from the read cache: one GetObject in all.
    s3 = Counter(op for service, op in made if service == "s3")
    # Listings: the store's (no NAME given: the one cluster is found) and the cluster's.
    assert s3["ListObjectsV2"] == 2 and s3["GetObject"] == 1 and s3["PutObject"] == 1, s3  # the cache; the lock
    assert len(made) <= NOOP_CALL_BUDGET, f"a no-op update made {len(made)} AWS calls: {sorted(Counter(made).items())}"
    assert run(["update", NAME, "--detailed-exitcode"], ok.env).returncode == 0


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

    # Kubernetes version: the control plane's template moves first; the nodes' waits until every
    # control plane runs the new version (the skew policy, docs/rolling-update.md), unless told
    c, cetag = store.get_cluster(NAME)
    cetag = store.replace_cluster(replace(c, kubernetes_version="1.36.9"), cetag)
    r = run_kopsy(["update", "cluster", "--detailed-exitcode"], env)
    assert r.returncode == 2, r.stdout + r.stderr
    out = r.stdout
    assert f"kubernetesVersion: {c.kubernetes_version} -> 1.36.9" in out
    assert out.count("LaunchTemplate/") == 1 and "LaunchTemplate/control-plane-us-east-1a." in out
    assert "Will create" not in out and "Will delete" not in out
    assert f"stay on Kubernetes {c.kubernetes_version}" in r.stderr
    skewed = run_kopsy(["update", "cluster", "--detailed-exitcode", "--ignore-kubelet-version-skew"], env)
    assert skewed.returncode == 2 and skewed.stdout.count("LaunchTemplate/") == 2, skewed.stdout + skewed.stderr
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
    assert len(ec2.describe_security_groups(Filters=owner)["SecurityGroups"]) == 4
    assert len(ec2.describe_launch_templates(Filters=owner)["LaunchTemplates"]) == 2
    assert len(boto("elbv2").describe_load_balancers()["LoadBalancers"]) == 2
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

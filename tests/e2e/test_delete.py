"""``kopsy delete cluster`` end to end: nothing of the cluster left, nothing of anyone else touched."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_update_support import calls, create_cluster, kill_after, mutating, register_image

from tests.inventory import inventory, total

pytestmark = pytest.mark.e2e

NAME = "a.example.com"
OTHER = "a.example.com.staging"


@pytest.fixture
def env(aws_env: dict[str, str], state_bucket: str, tmp_path: Path) -> dict[str, str]:
    return {**aws_env, "KOPSY_STATE_STORE": state_bucket, "KOPSY_AWS_CALL_LOG": str(tmp_path / "calls.log")}


@pytest.fixture
def image(boto: Callable[[str], Any]) -> str:
    return register_image(boto)


def settle(read: Callable[[], Any], *, quiet: float = 0.3, rounds: int = 3, timeout: float = 20.0) -> None:
    """Wait until ``read()`` answers the same ``rounds`` times in a row, ``quiet`` seconds apart."""
    deadline = time.monotonic() + timeout
    last, same = read(), 1
    while same < rounds:
        assert time.monotonic() < deadline, "the cloud kept changing after the run was killed"
        time.sleep(quiet)
        now = read()
        same = same + 1 if now == last else 1
        last = now


def _store_keys(boto: Callable[[str], Any], cluster: str) -> list[str]:
    resp = boto("s3").list_objects_v2(Bucket="kopsy-state", Prefix=f"{cluster}/")
    return [o["Key"] for o in resp.get("Contents", [])]


def _write_kubeconfig(env: dict[str, str]) -> Path:
    """A kubeconfig holding this cluster's context and a neighbour's (as ``export kubecfg`` names them)."""
    kubeconfig = Path(env["KUBECONFIG"])
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": NAME,
        "clusters": [{"name": n, "cluster": {"server": f"https://{n}"}} for n in (NAME, OTHER)],
        "users": [{"name": n, "user": {}} for n in (NAME, OTHER)],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in (NAME, OTHER)],
    }))
    return kubeconfig


def _contexts(kubeconfig: Path) -> list[str]:
    return [c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]]


def _first(log: list[tuple[str, str]], op: str) -> int:
    return next(i for i, (_, o) in enumerate(log) if o == op)


def _last(log: list[tuple[str, str]], op: str) -> int:
    return max(i for i, (_, o) in enumerate(log) if o == op)


def test_delete_removes_everything_in_dependency_order(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    before = inventory(boto, NAME)
    assert all(before[k] for k in ("VPC", "Subnet", "AutoScalingGroup", "Instance", "LoadBalancer", "IAMRole")), before
    # Things that are not the cluster's: an untagged VPC and one the cluster only *shares*.
    ec2 = boto("ec2")
    untagged = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    shared = ec2.create_vpc(
        CidrBlock="10.8.0.0/16",
        TagSpecifications=[{"ResourceType": "vpc", "Tags": [{"Key": f"kubernetes.io/cluster/{NAME}", "Value": "shared"}]}],
    )["Vpc"]["VpcId"]

    (tmp_path / "calls.log").unlink()
    dry = run_kopsy(["delete"], env)  # the short form: the store's only cluster
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].split() == ["TYPE", "NAME", "ID"]
    assert "Must specify --yes to delete cluster" in dry.stdout
    assert "AutoScalingGroup" in dry.stdout and "VPC" in dry.stdout
    as_json = json.loads(run_kopsy(["delete", "cluster", NAME, "-o", "json"], env).stdout)
    rows = [line.split()[:3] for line in dry.stdout.splitlines()[1:] if line.strip() and not line.startswith("Must")]
    assert [[r["type"], r["name"], r["id"]] for r in as_json["resources"]] == rows
    assert not mutating(calls(tmp_path / "calls.log"))

    kubeconfig = _write_kubeconfig(env)

    (tmp_path / "calls.log").unlink()
    r = run_kopsy(["delete", "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Deleted cluster: {NAME}" in r.stdout
    assert _contexts(kubeconfig) == [OTHER]
    kc = yaml.safe_load(kubeconfig.read_text())
    assert [c["name"] for c in kc["users"]] == [OTHER]

    # Progress as it goes, one aligned line per resource: "Deleted <kind> <name> [<id>]".
    progress = [line for line in r.stderr.splitlines() if line.startswith("Deleted ")]
    assert any(re.fullmatch(rf"Deleted VPC +{re.escape(NAME)}  {before['VPC'][0]}", line) for line in progress), progress
    assert any(re.fullmatch(rf"Deleted KeyPair +kubernetes\.{re.escape(NAME)}-[0-9a-f:]+", line) for line in progress), progress
    starts = {len(line) - len(line.split(None, 2)[2]) for line in progress}  # where the name begins
    assert len(starts) == 1, f"names not aligned: {progress}"
    assert "\t" not in r.stderr

    left = inventory(boto, NAME)
    assert total(left) == 0, left
    assert _store_keys(boto, NAME) == []
    assert {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]} >= {untagged, shared}

    # moto would accept most deletes in any order: check the order kopsy chose instead.
    log = mutating(calls(tmp_path / "calls.log"))
    first, last = (lambda op: _first(log, op)), (lambda op: _last(log, op))
    # A group's members go with its ForceDelete (a TerminateInstances beside it would have the
    # group replace them first); what their network interfaces hold goes only after the groups.
    assert "TerminateInstances" not in {op for _, op in log}
    network = min(first("DeleteSubnet"), first("DeleteSecurityGroup"), first("DetachInternetGateway"))
    assert last("DeleteAutoScalingGroup") < network
    assert first("DeleteLoadBalancer") < first("DeleteSecurityGroup")
    assert last("RevokeSecurityGroupIngress") < first("DeleteSecurityGroup")
    # Listeners go with their load balancer, before the target group they forward to.
    assert "DeleteListener" not in {op for _, op in log}
    assert first("DeleteLoadBalancer") < first("DeleteTargetGroup")
    assert last("DisassociateRouteTable") < first("DeleteRouteTable")
    assert first("DetachInternetGateway") < first("DeleteInternetGateway")
    assert last("RemoveRoleFromInstanceProfile") < first("DeleteRole")
    assert last("DeleteLaunchTemplate") > last("DeleteAutoScalingGroup")
    assert first("DeleteVpc") > max(last("DetachInternetGateway"), last("DeleteSubnet"), last("DeleteSecurityGroup"),
                                    last("DeleteRouteTable"))


# 8, not fewer: the first wave is 7 independent creates (2 roles, 2 profiles, VPC, gateway, key
# pair), each logged just before it is sent, so a kill at the 3rd could land before moto saw any
# (likelier since the addons are published beside them). The 8th waits for an answered create.
@pytest.mark.parametrize("kill_at", [8, 20, 40])
def test_delete_after_a_killed_update_leaves_nothing(
    kill_at: int, env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    from tests.conftest import KOPSY

    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    kill_after([KOPSY, "update", "--yes"], env, tmp_path / "calls.log", mutations=kill_at)
    # Calls the killed run had already sent still complete in moto (late under load): delete
    # starts once they have, as it would start minutes later on AWS, or it races the test's own kill.
    settle(lambda: inventory(boto, NAME))
    assert total(inventory(boto, NAME)) > 0
    r = run_kopsy(["delete", "cluster", NAME, "--yes", "--force-unlock"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert total(inventory(boto, NAME)) == 0, inventory(boto, NAME)
    assert _store_keys(boto, NAME) == []


def test_similar_names_are_never_confused(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    for name in (NAME, OTHER):
        create_cluster(run_kopsy, env, name, ssh_keypair[1], image, "--network-cidr", "172.20.0.0/16")
        assert run_kopsy(["update", "cluster", name, "--yes"], env).returncode == 0
    other_before = inventory(boto, OTHER)
    r = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert total(inventory(boto, NAME)) == 0
    assert inventory(boto, OTHER) == other_before
    assert _store_keys(boto, OTHER)
    again = run_kopsy(["update", "cluster", OTHER], env)
    assert "No changes need to be applied" in again.stdout, again.stdout


def test_delete_works_with_the_state_store_gone(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    assert "Must specify --yes" in run_kopsy(["delete", "cluster", NAME, "--unregister"], env).stdout
    r = run_kopsy(["delete", "cluster", NAME, "--unregister", "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert _store_keys(boto, NAME) == [] and total(inventory(boto, NAME)) > 0
    no_region = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert no_region.returncode != 0 and "--region" in no_region.stderr
    assert _store_keys(boto, NAME) == []  # the lock it took beside the spec read went again
    # Gone entirely: the bucket itself (KOPSY_STATE_STORE still names it).
    s3 = boto("s3")
    for v in s3.list_object_versions(Bucket="kopsy-state").get("Versions", []):
        s3.delete_object(Bucket="kopsy-state", Key=v["Key"], VersionId=v["VersionId"])
    for m in s3.list_object_versions(Bucket="kopsy-state").get("DeleteMarkers", []):
        s3.delete_object(Bucket="kopsy-state", Key=m["Key"], VersionId=m["VersionId"])
    s3.delete_bucket(Bucket="kopsy-state")
    no_region = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert no_region.returncode != 0 and "--region" in no_region.stderr and total(inventory(boto, NAME)) > 0
    r = run_kopsy(["delete", "cluster", NAME, "--region", "us-east-1", "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert "does not exist" in r.stderr and f"Deleted cluster: {NAME}" in r.stdout
    assert total(inventory(boto, NAME)) == 0


def test_a_resource_that_cannot_go_is_reported_and_the_state_kept(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    ec2 = boto("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}])["Vpcs"][0]["VpcId"]
    foreign = ec2.create_subnet(VpcId=vpc, CidrBlock="172.20.200.0/24")["Subnet"]["SubnetId"]  # not ours: untagged
    kubeconfig = _write_kubeconfig(env)
    # --wait long enough for everything but the VPC to go on a loaded machine (3 s was not): the
    # VPC is retried until the deadline, so this is also how long the test waits for it.
    r = run_kopsy(["delete", "cluster", NAME, "--yes", "--wait", "8s"], env)
    assert r.returncode == 1
    remains = r.stdout[r.stdout.index("Resources still carrying the cluster's tag"):].splitlines()
    assert remains[1].split() == ["TYPE", "NAME", "ID", "WHY"] and len(remains) == 3, r.stdout + r.stderr
    assert remains[2].split()[:3] == ["VPC", NAME, vpc] and "DependencyViolation" in remains[2]
    assert "remain" in r.stderr and "the state was kept" in r.stderr
    waiting = [line for line in r.stderr.splitlines() if line.startswith("Waiting ")]
    assert len(waiting) == 1 and re.match(rf"Waiting VPC +{re.escape(NAME)}  {vpc}: .*DependencyViolation", waiting[0]), r.stderr
    assert inventory(boto, NAME)["VPC"] == [vpc] and total(inventory(boto, NAME)) == 1
    assert ec2.describe_subnets(SubnetIds=[foreign])["Subnets"]  # never touched
    assert _store_keys(boto, NAME) and _contexts(kubeconfig) == [NAME, OTHER]

    # --force removes the state and the context anyway, but a leak is still not a success.
    forced = run_kopsy(["delete", "cluster", NAME, "--yes", "--force", "--wait", "1s"], env)
    assert forced.returncode == 1, forced.stdout + forced.stderr
    assert vpc in forced.stdout and "removed anyway (--force)" in forced.stderr
    assert f"Deleted cluster: {NAME}" not in forced.stdout
    assert _store_keys(boto, NAME) == [] and _contexts(kubeconfig) == [OTHER]
    assert inventory(boto, NAME)["VPC"] == [vpc]


def test_a_killed_delete_finishes_on_rerun(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    from tests.conftest import KOPSY

    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    (tmp_path / "calls.log").unlink()
    kill_after([KOPSY, "delete", "cluster", NAME, "--yes"], env, tmp_path / "calls.log", mutations=8)
    assert total(inventory(boto, NAME)) > 0
    r = run_kopsy(["delete", "cluster", NAME, "--yes", "--force-unlock"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert total(inventory(boto, NAME)) == 0
    assert _store_keys(boto, NAME) == []


def test_delete_and_update_take_the_cluster_lock(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(k, env[k])
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.state import open_store
    from kopsy.state.clusters import ClusterStore

    store = ClusterStore(open_store(env["KOPSY_STATE_STORE"], clients=AwsClients("us-east-1")))
    keys = _store_keys(boto, NAME)
    with store.lock(NAME, "edit by another user"):
        for args in (["delete", "--yes"], ["update", "--yes"]):
            r = run_kopsy(args, env)
            assert r.returncode != 0 and "is locked by" in r.stderr and "edit by another user" in r.stderr, r.stderr
    assert _store_keys(boto, NAME) == keys
    assert total(inventory(boto, NAME)) == 0  # the refused update created nothing


def test_iam_entities_with_kopsys_names_but_not_owned_are_never_taken_over_or_deleted(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    """IAM has no tag filter: kopsy finds roles and profiles by name. One of those names held by
    an untagged role or a ``shared`` profile stops the update, and delete leaves both alone."""
    import json

    iam = boto("iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName=f"nodes.{NAME}", AssumeRolePolicyDocument=trust)  # untagged
    iam.create_instance_profile(InstanceProfileName=f"control-plane.{NAME}",
                                Tags=[{"Key": f"kubernetes.io/cluster/{NAME}", "Value": "shared"}])
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    r = run_kopsy(["update", "--yes"], env)
    assert r.returncode != 0 and "not owned by cluster" in r.stderr, r.stderr
    assert iam.list_role_policies(RoleName=f"nodes.{NAME}")["PolicyNames"] == []  # not written into
    d = run_kopsy(["delete", "--yes"], env)
    assert d.returncode == 0, d.stdout + d.stderr
    assert iam.get_role(RoleName=f"nodes.{NAME}")["Role"]
    assert iam.get_instance_profile(InstanceProfileName=f"control-plane.{NAME}")["InstanceProfile"]["Roles"] == []
    left = inventory(boto, NAME)
    assert sorted(left.pop("IAMRole")) == [f"nodes.{NAME}"] and left.pop("IAMInstanceProfile") == [f"control-plane.{NAME}"]
    assert total(left) == 0, left  # (the inventory lists kopsy's IAM names whatever their tags)


def test_clusters_whose_names_map_to_the_same_load_balancer_name_stay_apart(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    """ELB names allow no dots: ``a.example.com`` and ``a-example.com`` both map to
    ``api-a-example-com``. The second cluster must not take over the first one's load balancer."""
    twin = "a-example.com"
    for name in (NAME, twin):
        create_cluster(run_kopsy, env, name, ssh_keypair[1], image)
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 0
    elb = boto("elbv2")
    lbs = elb.describe_load_balancers()["LoadBalancers"]  # the internet-facing one and the internal one
    tgs = elb.describe_target_groups()["TargetGroups"]
    assert len(lbs) == 2 and len(tgs) == 2
    r = run_kopsy(["update", "cluster", twin, "--yes"], env)
    assert r.returncode != 0 and "not owned by cluster a-example.com" in r.stderr, r.stderr
    for lb in lbs:
        assert len(elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]) == 1
    asg = boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    for tg in tgs:
        assert [g["AutoScalingGroupName"] for g in asg if tg["TargetGroupArn"] in g["TargetGroupARNs"]] == [f"control-plane-us-east-1a.{NAME}"]
    gone = run_kopsy(["delete", "cluster", twin, "--yes"], env)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert total(inventory(boto, twin)) == 0, (inventory(boto, twin), gone.stderr)
    again = run_kopsy(["update", "cluster", NAME], env)
    assert "No changes need to be applied" in again.stdout, again.stdout + again.stderr


def test_leftover_volumes_and_network_interfaces_are_found_by_tag_and_deleted(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    """A detached volume and a free network interface carrying the cluster's tag (what a node
    with DeleteOnTermination off, or a CNI, leaves behind) are found through DescribeTags and
    deleted, the interface before its subnet; look-alikes without the tag stay."""
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    ec2 = boto("ec2")

    def spec(kind: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [{"Key": f"kubernetes.io/cluster/{NAME}", "Value": "owned"}]}]

    ours = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, TagSpecifications=spec("volume"))["VolumeId"]
    theirs = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}])["Subnets"][0]
    eni = ec2.create_network_interface(SubnetId=subnet["SubnetId"], TagSpecifications=spec("network-interface"))
    eni_id = eni["NetworkInterface"]["NetworkInterfaceId"]

    listed = run_kopsy(["delete", "cluster", NAME, "-o", "json"], env)
    found = {(r["type"], r["id"]) for r in json.loads(listed.stdout)["resources"]}
    assert {("Volume", ours), ("NetworkInterface", eni_id)} <= found and ("Volume", theirs) not in found

    r = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    volumes = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    assert ours not in volumes and theirs in volumes
    assert eni_id not in {n["NetworkInterfaceId"] for n in ec2.describe_network_interfaces()["NetworkInterfaces"]}
    assert total(inventory(boto, NAME)) == 0


def test_an_instance_outside_the_groups_is_terminated_and_members_go_with_their_group(
    env: dict[str, str], image: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """A tagged instance no group owns (one an interrupted rolling update detached, say) gets a
    TerminateInstances of its own, before its subnet goes; the groups' members get none (their
    group's ForceDelete terminates them, and a terminate beside it would have the group replace
    them first)."""
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    ec2 = boto("ec2")
    subnet = ec2.describe_subnets(Filters=[{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}])["Subnets"][0]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": f"kubernetes.io/cluster/{NAME}", "Value": "owned"},
                                                  {"Key": "Name", "Value": f"detached.{NAME}"}]}]
    lone = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, SubnetId=subnet["SubnetId"],
                             TagSpecifications=tags)["Instances"][0]["InstanceId"]
    members = [i["InstanceId"] for g in boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
               for i in g["Instances"]]
    assert members and lone not in members

    (tmp_path / "calls.log").unlink()
    r = run_kopsy(["delete", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    log = mutating(calls(tmp_path / "calls.log"))
    terminated = [op for _, op in log if op == "TerminateInstances"]
    assert terminated == ["TerminateInstances"], log
    assert _last(log, "TerminateInstances") < _first(log, "DeleteSubnet")
    states = {i["InstanceId"]: i["State"]["Name"] for res in ec2.describe_instances(InstanceIds=[lone, *members])["Reservations"]
              for i in res["Instances"]}
    assert set(states.values()) == {"terminated"}, states
    assert total(inventory(boto, NAME)) == 0

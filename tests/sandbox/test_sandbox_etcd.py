"""etcd durability in the sandbox, through the real CLI: control planes "take" snapshots on a
shortened schedule, `get etcd-backups` lists them, `backup etcd` takes one over SSH; terminating
the only control plane (boto3) makes the Auto Scaling group's replacement restore and keep its
nodes; without a snapshot on a cluster that booted before, the replacement fails `restore`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import Sandbox, clean_env, run, ssh_run, stop_sandbox, wait_for

from kopsy.sandbox import control
from kopsy.sandbox.layout import Layout

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "dr.example.com"


@pytest.fixture
def sbe(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox whose control planes snapshot every 2 seconds."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    env = {**clean_env(home), "KOPSY_SANDBOX_ETCD_BACKUP_INTERVAL": "2"}
    directory = tmp_path / "sb"
    r = run(["sandbox", "up", "--dir", str(directory)], env, timeout=60)
    info = control.load(Layout.at(directory))
    assert r.returncode == 0 and info is not None, r.stderr
    s = Sandbox(directory, home, {**clean_env(home), **info.environment()}, info)
    try:
        yield s
    finally:
        assert stop_sandbox(directory) == []


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _backups(sb: Sandbox) -> list[dict]:
    return json.loads(_ok(sb.kopsy("get", "etcd-backups", NAME, "-o", "json")))


def _control_plane(sb: Sandbox) -> dict:
    ec2 = sb.clients().client("ec2")
    res = ec2.describe_instances(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]},
                                          {"Name": "tag:kopsy.io/role", "Values": ["ControlPlane"]},
                                          {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    found = [i for r in res["Reservations"] for i in r["Instances"]]
    assert len(found) == 1
    return found[0]


def _nodes(sb: Sandbox) -> set[str]:
    doc = json.loads(_ok(sb.kopsy("validate", "cluster", NAME, "--wait", "60s", "--interval", "1s", "-o", "json")))
    return {n["name"] for n in doc["nodes"] if n["role"] != "ControlPlane"}


def test_snapshots_restore_after_the_only_control_plane_is_replaced(sbe: Sandbox) -> None:
    sb = sbe
    _ok(sb.kopsy("create", "cluster", NAME, "--zones", "us-east-1a", "--node-count", "2",
                 "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    _ok(sb.kopsy("update", "cluster", NAME, "--yes"))
    nodes = _nodes(sb)
    assert len(nodes) == 2
    wait_for("two emulated snapshots", lambda: len(_backups(sb)) >= 2, timeout=30)
    table = _ok(sb.kopsy("get", "etcd-backups", NAME)).splitlines()
    assert table[0].split() == ["TIMESTAMP", "AGE", "SIZE", "REVISION", "K8S-VERSION"]
    out = _ok(sb.kopsy("backup", "etcd", NAME, "-o", "json"))  # over SSH, the rolling update's command
    assert json.loads(out)["key"].startswith("backups/etcd/")
    ts = json.loads(out)["timestamp"]
    s3 = sb.clients().client("s3")
    before = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=sb.info.bucket, Prefix=f"{NAME}/")["Contents"]
                    if "/backups/etcd/" not in o["Key"])
    dry = _ok(sb.kopsy("restore", "etcd", NAME, "--backup", ts))
    assert "Must specify --yes" in dry and "Downtime:" in dry
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=sb.info.bucket, Prefix=f"{NAME}/")["Contents"]
                  if "/backups/etcd/" not in o["Key"]) == before  # the dry run changed nothing
    done = _ok(sb.kopsy("restore", "etcd", NAME, "--backup", ts, "--yes", "--wait", "60s"))
    assert f"restored from etcd snapshot {ts} and valid" in done

    old = _control_plane(sb)
    sb.clients().client("ec2").terminate_instances(InstanceIds=[old["InstanceId"]])
    new = wait_for("the ASG's replacement", lambda: (c := _control_plane(sb)) if _control_plane_or_none(sb, old) else None,
                   timeout=60)
    assert new["InstanceId"] != old["InstanceId"]
    assert _nodes(sb) == nodes  # the same nodes: the replacement restored, it did not start a new cluster


def _control_plane_or_none(sb: Sandbox, old: dict) -> bool:
    try:
        return _control_plane(sb)["InstanceId"] != old["InstanceId"]
    except AssertionError:
        return False


def test_booted_before_without_a_snapshot_fails_restore(sbe: Sandbox) -> None:
    sb = sbe
    _ok(sb.kopsy("create", "cluster", NAME, "--zones", "us-east-1a", "--node-count", "1",
                 "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    _ok(sb.kopsy("update", "cluster", NAME, "--yes"))
    _nodes(sb)
    wait_for("the first-boot record", lambda: _backups(sb), timeout=30)
    s3 = sb.clients().client("s3")
    old = _control_plane(sb)
    sb.clients().client("ec2").terminate_instances(InstanceIds=[old["InstanceId"]])

    def lose_snapshots() -> None:  # every snapshot lost (say, deleted by hand), the first-boot record kept
        for o in s3.list_objects_v2(Bucket=sb.info.bucket, Prefix=f"{NAME}/backups/etcd/").get("Contents", []):
            if not o["Key"].endswith("first-boot.json"):
                s3.delete_object(Bucket=sb.info.bucket, Key=o["Key"])

    lose_snapshots()
    wait_for("the ASG's replacement", lambda: _control_plane_or_none(sb, old), timeout=60)
    lose_snapshots()  # one the old control plane may have taken as it went

    def restore_failed() -> str | None:  # once the replacement's sshd answers, validate says why
        r = sb.kopsy("validate", "cluster", NAME, "-o", "json")
        return r.stdout if r.returncode != 0 and "phase restore: no snapshot" in r.stdout else None

    out = wait_for("validate reporting restore failing with 'no snapshot'", restore_failed, timeout=30)
    assert "not initialising a new, empty cluster" in out


def _running_control_planes(sb: Sandbox) -> list[dict]:
    ec2 = sb.clients().client("ec2")
    res = ec2.describe_instances(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]},
                                          {"Name": "tag:kopsy.io/role", "Values": ["ControlPlane"]},
                                          {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return [i for r in res["Reservations"] for i in r["Instances"]]


def _members(sb: Sandbox, host: str) -> list[dict]:
    out, err, code = ssh_run(sb.layout.ssh_config, host, "sudo /usr/local/lib/kopsy/kopsy-helper etcd-members",
                             sb.home / ".ssh" / "id_ed25519")
    assert code == 0, err
    return json.loads(out)


def test_ha_replacement_removes_the_dead_member_and_three_are_started(sbe: Sandbox) -> None:
    sb = sbe
    _ok(sb.kopsy("create", "cluster", NAME, "--zones", "us-east-1a,us-east-1b,us-east-1c", "--control-plane-count", "3",
                 "--node-count", "1", "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    _ok(sb.kopsy("update", "cluster", NAME, "--yes"))
    _nodes(sb)
    cps = _running_control_planes(sb)
    assert len(cps) == 3
    wait_for("3 etcd members", lambda: len(_members(sb, cps[0]["PrivateIpAddress"])) == 3, timeout=30)
    dead = cps[1]
    sb.clients().client("ec2").terminate_instances(InstanceIds=[dead["InstanceId"]])
    wait_for("the replacement", lambda: {i["InstanceId"] for i in _running_control_planes(sb)} - {c["InstanceId"] for c in cps},
             timeout=60)
    _nodes(sb)  # validate passes with the replacement

    def settled() -> list[dict] | None:
        members = _members(sb, cps[0]["PrivateIpAddress"])
        return members if all(m["started"] and m["healthy"] for m in members) else None

    members = wait_for("3 started, healthy members", settled, timeout=30)
    assert len(members) == 3 and dead["PrivateDnsName"] not in {m["name"] for m in members}
    # the contract of the rolling update: removing a member that is gone is fine, twice
    out, _, code = ssh_run(sb.layout.ssh_config, cps[0]["PrivateIpAddress"],
                           f"sudo /usr/local/lib/kopsy/kopsy-helper etcd-remove-member --name {dead['PrivateDnsName']}",
                           sb.home / ".ssh" / "id_ed25519")
    assert code == 0 and json.loads(out)["removed"] is False

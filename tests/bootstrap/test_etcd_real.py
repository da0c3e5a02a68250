"""The REAL rendered etcd code (helper + the module update publishes) against a REAL etcd 3.4
on loopback and moto server: snapshot → S3 (SSE) → wipe → restore → keys back; and member
cleanup on a real 3-member cluster (a dead member removed, never below quorum, 3 started after)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kopsy.bootstrap import render_user_data
from kopsy.bootstrap.render import ETCD_MODULE_KEY, ETCD_MODULE_PATH, HELPER_PATH, etcd_module
from kopsy.spec.defaults import CreateOptions, new_cluster
from tests.tools import require_tool

pytestmark = pytest.mark.slow  # real etcd processes, the helper as a subprocess, moto server

BUCKET = "kopsy-state"
CLUSTER = "demo.example.com"
STORE = f"s3://{BUCKET}/{CLUSTER}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Etcd:
    """One real etcd member on 127.0.0.1 with its own ports and data dir."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.data = root / f"{name}.etcd"
        self.client = f"http://127.0.0.1:{_free_port()}"
        self.peer = f"http://127.0.0.1:{_free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / f"{name}.log"

    def start(self, initial_cluster: str = "", state: str = "new", token: str = "kopsy-test") -> None:
        etcd = require_tool("etcd")
        self.proc = subprocess.Popen(
            [etcd, "--name", self.name, "--data-dir", str(self.data),
             "--listen-client-urls", self.client, "--advertise-client-urls", self.client,
             "--listen-peer-urls", self.peer, "--initial-advertise-peer-urls", self.peer,
             "--initial-cluster", initial_cluster or f"{self.name}={self.peer}",
             "--initial-cluster-state", state, "--initial-cluster-token", token],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


def ctl(endpoints: list[str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([require_tool("etcdctl"), "--endpoints", ",".join(endpoints), "--dial-timeout=2s",
                        "--command-timeout=5s", *args], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "ETCDCTL_API": "3"})
    if check:
        assert r.returncode == 0, r.stderr
    return r


def wait_healthy(endpoints: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while ctl(endpoints, "endpoint", "health", check=False).returncode != 0:
        assert time.monotonic() < deadline, f"etcd at {endpoints} never became healthy"
        time.sleep(0.2)


def put_when_writable(endpoints: list[str], key: str, value: str, timeout: float = 60) -> None:
    """A write to survivors right after a member died: if the dead one led, the write waits for the
    election (seconds on a loaded machine), as any client of etcd would."""
    deadline = time.monotonic() + timeout
    while (r := ctl(endpoints, "put", key, value, check=False)).returncode != 0:
        assert time.monotonic() < deadline, f"etcd at {endpoints} never took a write again: {r.stderr}"
        time.sleep(0.5)


@pytest.fixture
def etcds(tmp_path: Path) -> Iterator[Callable[[str], Etcd]]:
    made: list[Etcd] = []

    def make(name: str) -> Etcd:
        e = Etcd(tmp_path, name)
        made.append(e)
        return e

    yield make
    for e in made:
        e.stop()


@pytest.fixture
def instance(tmp_path: Path, imds: str, boto: Callable[[str], Any], aws_env: dict[str, str]) -> dict[str, Any]:
    """A control plane's files taken from its RENDERED user-data (the helper) and from what update
    publishes (the etcd module, checked against the sha256 the user-data pins)."""
    cluster, igs = new_cluster(CreateOptions(name=CLUSTER, zones=["us-east-1a"]))
    cp = next(ig for ig in igs if ig.is_control_plane)
    data = render_user_data(cluster, cp, api_endpoint="api-int.example.com:443", ca_cert_hash="sha256:" + "0" * 64,
                            state_store_url=STORE, s3_endpoint=aws_env["AWS_ENDPOINT_URL"], s3_region="us-east-1")
    files = {f["path"]: f["content"] for f in yaml.safe_load(gzip.decompress(data))["write_files"]}
    root = tmp_path / "instance"
    root.mkdir()
    helper = root / "kopsy-helper"
    helper.write_text(files[HELPER_PATH])
    s3 = boto("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=f"{CLUSTER}/{ETCD_MODULE_KEY}", Body=etcd_module())  # as update publishes it
    module = s3.get_object(Bucket=BUCKET, Key=f"{CLUSTER}/{ETCD_MODULE_KEY}")["Body"].read()
    script = files["/usr/local/sbin/kopsy-bootstrap"]
    import hashlib

    assert f"{hashlib.sha256(module).hexdigest()}  {ETCD_MODULE_PATH}" in script  # the pin the boot checks
    (root / "kopsy_etcd.py").write_bytes(module)
    config = root / "bootstrap-config.json"
    config.write_text(files["/etc/kopsy/bootstrap-config.json"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"KOPSY_IMDS_ENDPOINT": imds, "NO_PROXY": "127.0.0.1", "KOPSY_ETCD_PKI": "none",
                "KOPSY_ETCD_WORK": str(root / "work"), "KOPSY_EC2_ENDPOINT": aws_env["AWS_ENDPOINT_URL"],
                "PATH": f"{Path(require_tool('etcdctl')).parent}:{env.get('PATH', '')}"})
    return {"helper": helper, "config": config, "env": env, "s3": s3, "root": root,
            "timer": files["/etc/systemd/system/kopsy-etcd-backup.timer"]}


def helper(inst: dict[str, Any], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/python3", str(inst["helper"]), "--config", str(inst["config"]), *args],
                          env={**inst["env"], **env}, capture_output=True, text=True, timeout=120)


def test_snapshot_to_s3_wipe_restore_keys_back(instance: dict[str, Any], etcds: Callable[[str], Etcd]) -> None:
    inst = instance
    assert "OnUnitActiveSec=15m" in inst["timer"]  # spec default etcd.backupInterval
    r = helper(inst, "etcd-boot-decision")
    assert (r.returncode, r.stdout.strip()) == (0, "init"), r.stderr  # nothing recorded: a first boot may init
    assert helper(inst, "etcd-mark-first-boot", "--node", "cp-1").returncode == 0
    r = helper(inst, "etcd-boot-decision")
    assert r.stdout.strip() == "no-snapshot"  # booted before, nothing to restore: never a new empty cluster

    e = etcds("ip-172-20-32-10.ec2.internal")
    e.start()
    wait_healthy([e.client])
    for i in range(50):
        ctl([e.client], "put", f"/registry/secrets/default/s{i}", f"value-{i}")
    env = {"KOPSY_ETCD_ENDPOINT": e.client}
    r = helper(inst, "etcd-snapshot", "--if-leader", "--prune", **env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    out = json.loads(lines[0])
    assert set(out) == {"timestamp", "key", "revision", "size", "sha256"} and out["revision"] >= 50
    assert out["key"] == f"backups/etcd/{out['timestamp']}/snapshot.db"
    s3 = inst["s3"]
    obj = s3.get_object(Bucket=BUCKET, Key=f"{CLUSTER}/{out['key']}")
    assert obj["ServerSideEncryption"] == "AES256" and obj["ContentLength"] == out["size"]
    meta = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{CLUSTER}/backups/etcd/{out['timestamp']}/meta.json")["Body"].read())
    assert meta["members"] == 1 and meta["kubernetesVersion"] and meta["sha256"] == out["sha256"]
    assert "value-1" not in r.stdout + r.stderr

    e.stop()
    shutil.rmtree(e.data)  # the instance is gone, and its root volume with it
    r = helper(inst, "etcd-boot-decision")
    assert r.stdout.strip() == f"restore {out['timestamp']}"
    r = helper(inst, "etcd-restore", "--backup", "newest", "--name", e.name, "--peer-url", e.peer,
               "--data-dir", str(e.data))
    assert r.returncode == 0, r.stderr
    e.start()
    wait_healthy([e.client])
    got = ctl([e.client], "get", "--prefix", "/registry/secrets/default/", "--print-value-only").stdout.split()
    assert sorted(got) == sorted(f"value-{i}" for i in range(50))

    # a damaged snapshot is refused, and the data dir in place is left alone
    s3.put_object(Bucket=BUCKET, Key=f"{CLUSTER}/{out['key']}", Body=b"not a snapshot")
    e.stop()
    r = helper(inst, "etcd-restore", "--backup", out["timestamp"], "--name", e.name, "--peer-url", e.peer,
               "--data-dir", str(e.data))
    assert r.returncode == 1 and "does not match the sha256" in r.stderr
    assert (e.data / "member").is_dir()


def test_a_follower_does_not_snapshot(instance: dict[str, Any], etcds: Callable[[str], Etcd]) -> None:
    a, b, c = etcds("a"), etcds("b"), etcds("c")
    initial = ",".join(f"{m.name}={m.peer}" for m in (a, b, c))
    for m in (a, b, c):
        m.start(initial)
    wait_healthy([a.client, b.client, c.client])
    outs = [json.loads(helper(instance, "etcd-snapshot", "--if-leader", KOPSY_ETCD_ENDPOINT=m.client).stdout)
            for m in (a, b, c)]
    assert sum("skipped" not in o for o in outs) == 1  # only the leader took one


def _launch(boto: Callable[[str], Any], count: int) -> list[dict[str, Any]]:
    ec2 = boto("ec2")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    tags = [{"ResourceType": "instance", "Tags": [{"Key": "kopsy.io/cluster", "Value": CLUSTER}]}]
    got = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count, TagSpecifications=tags)["Instances"]
    return list(got)


def _started(endpoints: list[str]) -> list[str]:
    members = json.loads(ctl(endpoints, "member", "list", "-w", "json").stdout)["members"]
    return sorted(m["name"] for m in members if m.get("name") and m.get("clientURLs"))


def test_replacement_removes_the_dead_member_and_joins(instance: dict[str, Any], etcds: Callable[[str], Etcd],
                                                       boto: Callable[[str], Any]) -> None:
    vms = _launch(boto, 3)
    names = [vm["PrivateDnsName"] for vm in vms]
    members = [etcds(n) for n in names]
    initial = ",".join(f"{m.name}={m.peer}" for m in members)
    for m in members:
        m.start(initial)
    urls = [m.client for m in members]
    wait_healthy(urls)
    assert _started(urls) == sorted(names)

    # one control plane dies: its process and its instance
    members[1].stop()
    boto("ec2").terminate_instances(InstanceIds=[vms[1]["InstanceId"]])
    alive = [members[0].client, members[2].client]
    put_when_writable(alive, "quorum", "held")  # 2 of 3: quorum holds, once a leader is elected

    # a bystander asking to remove a healthy member now would break quorum: refused, exit 2
    r = helper(instance, "etcd-remove-member", "--name", names[0], KOPSY_ETCD_ENDPOINTS=",".join(alive))
    assert r.returncode == 2 and "below quorum" in r.stderr
    # removing an absent member is success (the rolling update may ask twice)
    r = helper(instance, "etcd-remove-member", "--name", "ip-10-9-9-9.ec2.internal", KOPSY_ETCD_ENDPOINTS=",".join(alive))
    assert r.returncode == 0 and json.loads(r.stdout)["removed"] is False

    # the Auto Scaling group's replacement boots: it removes the dead member, then joins
    new = _launch(boto, 1)[0]
    r = helper(instance, "etcd-cleanup", "--self", new["PrivateDnsName"], KOPSY_ETCD_ENDPOINTS=",".join(urls))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"removed": [names[1]]}
    assert _started(alive) == sorted([names[0], names[2]])
    assert ctl(alive, "get", "quorum", "--print-value-only").stdout.strip() == "held"
    joiner = etcds(new["PrivateDnsName"])
    ctl(alive, "member", "add", joiner.name, f"--peer-urls={joiner.peer}")
    joiner.start(",".join(f"{m.name}={m.peer}" for m in (members[0], members[2], joiner)), state="existing")
    wait_healthy([joiner.client])
    assert _started(alive + [joiner.client]) == sorted([names[0], names[2], joiner.name])
    report = json.loads(helper(instance, "etcd-members", KOPSY_ETCD_ENDPOINTS=",".join(alive)).stdout)
    assert sorted(m["name"] for m in report if m["started"] and m["healthy"]) == sorted([names[0], names[2], joiner.name])
    # and a second cleanup changes nothing
    r = helper(instance, "etcd-cleanup", "--self", "someone-else", KOPSY_ETCD_ENDPOINTS=",".join(alive))
    assert json.loads(r.stdout) == {"removed": []}

"""`kopsy backup etcd` and `kopsy restore etcd` end to end: the real executable, the S3 store in
moto, moto instances with kopsy's tags, and loopback sshd doubles answering the on-instance
etcd commands (docs/disaster-recovery.md) as a control plane would."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from validate_doubles import FakeCluster

from kopsy.etcd.remote import HELPER
from kopsy.etcd.restore import STEPS, Member, step_command, targets

pytestmark = pytest.mark.e2e

CLUSTER = "demo.example.com"
TS = "2026-12-01T23:45:00Z"
SNAP = {"timestamp": TS, "key": f"backups/etcd/{TS}/snapshot.db", "revision": 4242, "size": 2048, "sha256": "ab" * 32}


def _setup(aws_env, state_bucket, run_kopsy, clients, fake_cluster, ssh_keypair, *create: str) -> tuple[FakeCluster, dict[str, str]]:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    r = run_kopsy(["create", "cluster", CLUSTER, "--zones", "us-east-1a", "--ssh-public-key", str(ssh_keypair[1]), *create], env)
    assert r.returncode == 0, r.stderr
    from kopsy.state import open_store
    from kopsy.state.clusters import ClusterStore

    store = ClusterStore(open_store(state_bucket, clients=clients))
    fc = fake_cluster([(ig.name, ig.role, ig.min_size) for ig, _ in store.list_instance_groups(CLUSTER)])
    env["KOPSY_SSH_CONFIG"] = str(fc.ssh_config)
    return fc, env


def _add_answers(fc: FakeCluster, per_host: Callable[[Any], dict[str, dict[str, Any]]]) -> None:
    for h in fc.control_planes:
        answers = json.loads(Path(h.sshd.answers_path).read_text())
        answers.update(per_host(h))
        h.sshd.set_answers(answers)


def _store_snapshot(boto, bucket: str, ts: str = TS) -> None:
    meta = {**SNAP, "timestamp": ts, "members": 1, "kubernetesVersion": "1.35.0"}
    s3 = boto("s3")
    s3.put_object(Bucket=bucket, Key=f"{CLUSTER}/backups/etcd/{ts}/snapshot.db", Body=b"x")
    s3.put_object(Bucket=bucket, Key=f"{CLUSTER}/backups/etcd/{ts}/meta.json", Body=json.dumps(meta).encode())


def test_backup_etcd_runs_the_snapshot_on_a_control_plane(aws_env, state_bucket, run_kopsy, clients, fake_cluster, ssh_keypair) -> None:
    fc, env = _setup(aws_env, state_bucket, run_kopsy, clients, fake_cluster, ssh_keypair)
    _add_answers(fc, lambda h: {f"sudo {HELPER} etcd-snapshot": {"stdout": json.dumps(SNAP) + "\n"}})
    r = run_kopsy(["backup", "etcd", CLUSTER], env)
    assert r.returncode == 0, r.stderr
    assert f"etcd snapshot {TS} of {CLUSTER} stored (revision 4242, 2048 bytes" in r.stdout
    r = run_kopsy(["backup", "etcd", CLUSTER, "-o", "json"], env)
    assert json.loads(r.stdout)["sha256"] == "ab" * 32
    _add_answers(fc, lambda h: {f"sudo {HELPER} etcd-snapshot": {"stderr": "kopsy-helper: etcdctl snapshot: context deadline exceeded\n", "exit": 1}})
    r = run_kopsy(["backup", "etcd", CLUSTER], env)
    assert r.returncode != 0 and "context deadline exceeded" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_restore_etcd_dry_run_then_yes_resumes_where_it_stopped(aws_env, state_bucket, run_kopsy, clients, fake_cluster,
                                                                 ssh_keypair, boto) -> None:
    fc, env = _setup(aws_env, state_bucket, run_kopsy, clients, fake_cluster, ssh_keypair, "--control-plane-count", "3")
    bucket = state_bucket.removeprefix("s3://")
    r = run_kopsy(["restore", "etcd", CLUSTER, "--backup", TS], env)
    assert r.returncode != 0 and "has no etcd snapshot" in r.stderr
    _store_snapshot(boto, bucket)
    before = sorted(o["Key"] for o in boto("s3").list_objects_v2(Bucket=bucket)["Contents"])
    r = run_kopsy(["restore", "etcd", CLUSTER, "--backup", TS], env)
    assert r.returncode == 0, r.stderr
    assert "Downtime:" in r.stdout and r.stdout.strip().endswith("Must specify --yes to restore")
    assert "on 3 control plane(s)" in r.stdout
    assert sorted(o["Key"] for o in boto("s3").list_objects_v2(Bucket=bucket)["Contents"]) == before  # nothing changed

    members = sorted((Member(h.instance_id, h.private_dns, h.private_ip, "") for h in fc.control_planes), key=lambda m: m.name)
    ok = {"stdout": "{}\n"}
    # first run: every step but the restore itself answers (the token is new each run): it stops there
    _add_answers(fc, lambda h: {step_command(s, m, members, TS, "x"): ok for s in STEPS if s != "restore"
                                for m in targets(s, members) if m.instance_id == h.instance_id})
    r = run_kopsy(["restore", "etcd", CLUSTER, "--backup", TS, "--yes", "--wait", "30s"], env)
    assert r.returncode != 0 and "restore stopped at step 'restore' on" in r.stderr and "again to resume" in r.stderr
    progress = json.loads(boto("s3").get_object(Bucket=bucket, Key=f"{CLUSTER}/restore-etcd.json")["Body"].read())
    assert sorted(progress["done"]["stop"]) == sorted(m.instance_id for m in members)  # every API server was stopped first
    token = progress["token"]
    # another snapshot while this one is half done: refused
    _store_snapshot(boto, bucket, "2026-12-01T23:00:00Z")
    r = run_kopsy(["restore", "etcd", CLUSTER, "--backup", "2026-12-01T23:00:00Z", "--yes"], env)
    assert r.returncode != 0 and f"an interrupted restore of snapshot {TS}" in r.stderr
    _add_answers(fc, lambda h: {step_command(s, m, members, TS, token): ok for s in STEPS
                                for m in targets(s, members) if m.instance_id == h.instance_id})
    r = run_kopsy(["restore", "etcd", CLUSTER, "--backup", TS, "--yes", "--wait", "30s"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("(done before, skipped)") == 3  # the stops of the first run
    assert "restored from etcd snapshot" in r.stdout
    keys = {o["Key"] for o in boto("s3").list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"{CLUSTER}/restore-etcd.json" not in keys and f"{CLUSTER}/lock" not in keys

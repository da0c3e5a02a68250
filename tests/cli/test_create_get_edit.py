"""create → get → edit → replace through the real executable, on a file:// store and on S3 (moto server)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import KOPSY

pytestmark = pytest.mark.e2e  # drives the real kopsy executable against moto server

NAME = "demo.example.com"


def create(run_kopsy, env, pub: Path, *extra: str):
    return run_kopsy(
        ["create", "cluster", NAME, "--zones", "us-east-1a,us-east-1b", "--ssh-public-key", str(pub), *extra], env
    )


def test_create_writes_spec_pki_and_key_then_get_reads_them(run_kopsy, store_env, ssh_keypair, snapshot) -> None:
    priv, pub = ssh_keypair
    r = create(run_kopsy, store_env, pub, "--node-count", "3")
    assert r.returncode == 0, r.stderr
    assert "kopsy update cluster demo.example.com --yes" in r.stdout
    assert "Warning: SSH is open to the whole internet" in r.stderr
    keys = set(snapshot(store_env))
    for rel in ["config", "instancegroup/control-plane-us-east-1a", "instancegroup/nodes", "pki/ca.crt",
                "pki/ca.key", "pki/etcd/ca.key", "pki/front-proxy-ca.key", "pki/sa.key", "pki/sa.pub",
                "secrets/bootstrap-token", "ssh/public/admin"]:
        assert f"{NAME}/{rel}" in keys
    # Secrets never reach the terminal.
    for line in (r.stdout + r.stderr).splitlines():
        assert "PRIVATE KEY" not in line

    r = run_kopsy(["get", "clusters"], store_env)
    assert r.returncode == 0 and NAME in r.stdout and "us-east-1a,us-east-1b" in r.stdout
    r = run_kopsy(["get", "ig", "-o", "yaml"], store_env)
    docs = list(yaml.safe_load_all(r.stdout))
    nodes = [d for d in docs if d["metadata"]["name"] == "nodes"][0]
    assert nodes["spec"]["minSize"] == 3 and nodes["spec"]["role"] == "Node"
    r = run_kopsy(["get", "cluster", NAME, "-o", "json"], store_env)
    assert '"networkCIDR": "172.20.0.0/16"' in r.stdout
    assert f'"kopsy.io/ssh-public-key-path": "{pub}"' in r.stdout


def test_create_twice_is_refused_and_changes_nothing(run_kopsy, store_env, ssh_keypair, snapshot) -> None:
    _, pub = ssh_keypair
    assert create(run_kopsy, store_env, pub).returncode == 0
    before = snapshot(store_env)
    r = create(run_kopsy, store_env, pub, "--node-count", "9")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith('Error: cluster "demo.example.com" already exists')
    assert snapshot(store_env) == before


def test_edit_round_trip_and_invalid_edit_reopens(run_kopsy, store_env, ssh_keypair, editor, tmp_path) -> None:
    _, pub = ssh_keypair
    assert create(run_kopsy, store_env, pub).returncode == 0
    env = dict(store_env)
    # First save is invalid (maxSize < minSize); the editor sees the error on top and fixes it.
    env["EDITOR"] = editor(
        """
        if "# Error:" in text:
            assert "spec.maxSize: 1 is smaller than spec.minSize 4" in text, text
            text = text.replace("maxSize: 1", "maxSize: 4")
        else:
            text = text.replace("minSize: 2", "minSize: 4").replace("maxSize: 2", "maxSize: 1")
        """
    )
    r = run_kopsy(["edit", "ig", "nodes"], env)
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["get", "ig", "nodes", "-o", "json"], store_env)
    assert '"minSize": 4' in r.stdout and '"maxSize": 4' in r.stdout

    env["EDITOR"] = editor("text = text.replace('kubernetesVersion: 1.36.0', 'kubernetesVersion: 1.37.1')")
    assert run_kopsy(["edit", "cluster"], env).returncode == 0
    assert "kubernetesVersion: 1.37.1" in run_kopsy(["get", "cluster", NAME, "-o", "yaml"], store_env).stdout

    env["EDITOR"] = editor("pass")
    r = run_kopsy(["edit", "cluster", NAME], env)
    assert r.returncode == 0 and "no changes made" in r.stdout


def test_two_concurrent_edits_one_wins_one_conflicts(run_kopsy, store_env, ssh_keypair, editor, tmp_path) -> None:
    _, pub = ssh_keypair
    assert create(run_kopsy, store_env, pub).returncode == 0
    gate = tmp_path / "gate"
    opened = tmp_path / "opened"
    slow_env = dict(store_env)
    slow_env["EDITOR"] = editor(
        f"""
        pathlib.Path({str(opened)!r}).write_text("open")
        deadline = time.time() + 60
        while not os.path.exists({str(gate)!r}) and time.time() < deadline:
            time.sleep(0.05)
        text = text.replace("minSize: 2", "minSize: 5").replace("maxSize: 2", "maxSize: 5")
        """
    )
    slow = subprocess.Popen([KOPSY, "edit", "ig", "nodes"], env=slow_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # Wait until the slow editor has the file open (so its edit has read the ETag).
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline and slow.poll() is None:
            time.sleep(0.05)
        assert opened.exists(), "the slow editor never started"
        fast_env = dict(store_env)
        fast_env["EDITOR"] = editor('text = text.replace("minSize: 2", "minSize: 3").replace("maxSize: 2", "maxSize: 3")')
        fast = run_kopsy(["edit", "ig", "nodes"], fast_env)
        assert fast.returncode == 0, fast.stderr
    finally:
        gate.write_text("go")
        out, err = slow.communicate(timeout=60)
    assert slow.returncode == 1
    assert "was changed by someone else" in err and "Traceback" not in err
    r = run_kopsy(["get", "ig", "nodes", "-o", "json"], store_env)
    assert '"minSize": 3' in r.stdout  # the first write survived; nothing was lost silently


def test_create_from_file_and_replace(run_kopsy, store_env, ssh_keypair, tmp_path) -> None:
    _, pub = ssh_keypair
    spec = run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a", "--ssh-public-key", str(pub),
                      "--dry-run", "-o", "yaml"], store_env)
    assert spec.returncode == 0
    path = tmp_path / "cluster.yaml"
    path.write_text(spec.stdout)
    # Offline validation: no store, no credentials.
    offline = {k: v for k, v in store_env.items() if not k.startswith(("AWS_", "KOPSY_"))}
    r = run_kopsy(["create", "-f", str(path), "--dry-run"], offline)
    assert r.returncode == 0 and "valid" in r.stdout

    r = run_kopsy(["create", "-f", str(path), "--ssh-public-key", str(pub)], store_env)
    assert r.returncode == 0, r.stderr
    docs = list(yaml.safe_load_all(spec.stdout))
    docs[-1]["spec"]["machineType"] = "m5.large"
    docs.append({"apiVersion": "kopsy.io/v1alpha1", "kind": "InstanceGroup",
                 "metadata": {"name": "gpu", "labels": {"kopsy.io/cluster": NAME}},
                 "spec": {"role": "Node", "machineType": "g5.xlarge", "minSize": 0, "maxSize": 2,
                          "subnets": ["us-east-1a"], "taints": ["nvidia.com/gpu=present:NoSchedule"]}})
    path.write_text(yaml.safe_dump_all(docs))
    r = run_kopsy(["replace", "-f", str(path)], store_env)
    assert r.returncode == 0, r.stderr
    table = run_kopsy(["get", "instancegroups"], store_env).stdout
    assert "m5.large" in table and "g5.xlarge" in table


def test_cluster_name_resolution(run_kopsy, store_env, ssh_keypair) -> None:
    _, pub = ssh_keypair
    assert create(run_kopsy, store_env, pub).returncode == 0
    # One cluster: commands find it on their own.
    assert run_kopsy(["get", "ig"], store_env).returncode == 0
    r = run_kopsy(["create", "cluster", "other.example.com", "--zones", "us-east-1a", "--ssh-public-key", str(pub)],
                  store_env)
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["get", "ig"], store_env)
    assert r.returncode == 2 and "demo.example.com, other.example.com" in r.stderr
    env = dict(store_env, KOPSY_CLUSTER_NAME="other.example.com")
    assert run_kopsy(["get", "ig"], env).returncode == 0

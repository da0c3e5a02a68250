"""``update --yes`` keeps the cluster's addons in the state store, pinned by the user-data.

The cloud-controller-manager, the EBS CSI driver and the gp3 StorageClass are rendered at update
time into ``<cluster>/addons/...`` (kops' ``addons/`` prefix); each control plane's launch
template pins their sha256, so what the store holds is what the first control plane applies.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import calls, create_cluster, mutating, register_image

from kopsy.bootstrap import parse_user_data

pytestmark = pytest.mark.e2e

NAME = "addons.example.com"
BUCKET = "kopsy-state"


def _stored(boto: Callable[[str], Any]) -> dict[str, bytes]:
    s3 = boto("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{NAME}/addons/").get("Contents", [])]
    return {k.split("/", 1)[1]: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def _pins(boto: Callable[[str], Any]) -> dict[str, dict[str, str]]:
    """Launch template -> the addon sums its latest user-data pins."""
    ec2 = boto("ec2")
    out = {}
    for lt in ec2.describe_launch_templates(MaxResults=100)["LaunchTemplates"]:
        v = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Latest"])
        data = base64.b64decode(v["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"])
        cfg = parse_user_data(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
        out[lt["LaunchTemplateName"]] = dict(cfg.addons)
        assert cfg.cloudProvider == "external", lt["LaunchTemplateName"]
    return out


def test_update_writes_the_addons_the_control_planes_pin_and_rewrites_only_a_changed_one(
    aws_env: dict[str, str], state_bucket: str, tmp_path: Path, boto: Callable[[str], Any],
    run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    plan = run_kopsy(["update", "cluster", NAME], env)
    assert plan.returncode == 0, plan.stderr
    assert _stored(boto) == {}  # the dry run writes nothing

    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    from kopsy.bootstrap.render import ETCD_MODULE_KEY, etcd_module

    module = boto("s3").get_object(Bucket=BUCKET, Key=f"{NAME}/{ETCD_MODULE_KEY}")["Body"].read()
    assert module == etcd_module()  # published beside the addons, as the control planes' pin expects
    stored = _stored(boto)
    assert sorted(stored) == ["addons/aws-cloud-controller-manager/k8s-1.35.yaml", "addons/aws-ebs-csi-driver/v1.59.0.yaml",
                              "addons/storage-gp3/v1.yaml"]
    assert f"wrote s3://{BUCKET}/{NAME}/addons/storage-gp3/v1.yaml" in r.stderr
    ccm = stored["addons/aws-cloud-controller-manager/k8s-1.35.yaml"].decode()
    for arg in (f"--cluster-name={NAME}", "--cloud-provider=aws", "--configure-cloud-routes=false"):
        assert arg in ccm
    assert f"--extra-tags=KubernetesCluster={NAME}" in stored["addons/aws-ebs-csi-driver/v1.59.0.yaml"].decode()
    sums = {k: hashlib.sha256(v).hexdigest() for k, v in stored.items()}
    pins = _pins(boto)
    assert {n: p for n, p in pins.items() if n.startswith("control-plane")} == {
        n: sums for n in pins if n.startswith("control-plane")}
    assert all(p == {} for n, p in pins.items() if not n.startswith("control-plane"))  # nodes apply nothing

    # Unchanged: a second --yes writes no addon and changes nothing in the cloud.
    log = tmp_path / "calls.log"
    again = run_kopsy(["update", "cluster", NAME, "--yes"], {**env, "KOPSY_AWS_CALL_LOG": str(log)})
    assert again.returncode == 0, again.stderr
    assert "wrote " not in again.stderr and "No changes need to be applied" in again.stdout
    assert mutating(calls(log)) == []

    # One changed in the store (by hand, or by an attacker): the next --yes puts kopsy's bytes back.
    key = f"{NAME}/addons/aws-ebs-csi-driver/v1.59.0.yaml"
    boto("s3").put_object(Bucket=BUCKET, Key=key, Body=stored["addons/aws-ebs-csi-driver/v1.59.0.yaml"] + b"# x\n")
    fixed = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stderr.count("wrote ") == 1 and "aws-ebs-csi-driver" in fixed.stderr
    assert _stored(boto) == stored

    assert run_kopsy(["delete", "cluster", NAME, "--yes"], env).returncode == 0
    assert _stored(boto) == {}  # the addons go with the rest of the cluster's state

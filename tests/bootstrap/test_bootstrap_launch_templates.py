"""The user-data in the launch templates that `kopsy update cluster --yes` creates (the real
executable against moto server) is exactly the renderer's: decoded back from
DescribeLaunchTemplateVersions, byte-identical to ``render_user_data`` for its group, strictly
valid cloud-config, under 16 KB, and free of the secrets `kopsy create` put in the state store."""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
from pathlib import Path

import pytest

from tests.tools import require_tool
import yaml

from kopsy.bootstrap import parse_user_data, render_user_data
from kopsy.pki import ca_cert_hash
from kopsy.spec.model import cluster_from_dict, instance_group_from_dict

pytestmark = pytest.mark.e2e

NAME = "demo.example.com"
HERE = Path(__file__).parent
SECRET_KEYS = ("pki/ca.key", "pki/front-proxy-ca.key", "pki/etcd/ca.key", "pki/sa.key", "secrets/bootstrap-token")


def test_update_yes_launch_templates_carry_the_rendered_user_data(aws_env, state_bucket, boto, run_kopsy,
                                                                   ssh_keypair):
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    image = boto("ec2").register_image(Name="ubuntu-noble-24.04-test", RootDeviceName="/dev/sda1")["ImageId"]
    r = run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a,us-east-1b,us-east-1c", "--node-count", "2",
                   "--control-plane-count", "3", "--networking", "cilium", "--image", image,
                   "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr

    s3 = boto("s3")
    read = lambda rel: s3.get_object(Bucket="kopsy-state", Key=f"{NAME}/{rel}")["Body"].read()  # noqa: E731
    cluster = cluster_from_dict(yaml.safe_load(read("config")))
    ca_hash = ca_cert_hash(read("pki/ca.crt"))
    secrets = [read(k).strip() for k in SECRET_KEYS]
    secrets += [b"".join(s.splitlines()[1:-1]) for s in secrets if s.startswith(b"-----BEGIN")]  # base64 bodies
    secrets.append(read("secrets/bootstrap-token").strip().split(b".")[1])  # the token's secret half

    ec2 = boto("ec2")
    lbs = {lb["Scheme"]: lb for lb in boto("elbv2").describe_load_balancers()["LoadBalancers"]}
    lb, public = lbs["internal"], lbs["internet-facing"]  # instances use the internal one
    templates = ec2.describe_launch_templates()["LaunchTemplates"]
    assert len(templates) == 4  # 3 control-plane groups + nodes
    modes, docs = {}, {}
    for lt in templates:
        ig_name = lt["LaunchTemplateName"].removesuffix(f".{NAME}")
        ig = instance_group_from_dict(yaml.safe_load(read(f"instancegroup/{ig_name}")))
        (v,) = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"],
                                                     Versions=["$Latest"])["LaunchTemplateVersions"]
        encoded = v["LaunchTemplateData"]["UserData"]
        data = base64.b64decode(encoded)
        cfg = parse_user_data(data)
        assert cfg.apiEndpoint == f"{lb['DNSName']}:443" and cfg.apiPublicHost == public["DNSName"] and cfg.caCertHash == ca_hash
        assert cfg.stateStore == f"{state_bucket}/{NAME}" and cfg.instanceGroup == ig_name
        # byte for byte what the renderer makes for this group (not a placeholder, not re-encoded)
        assert data == render_user_data(cluster, ig, api_endpoint=cfg.apiEndpoint, ca_cert_hash=ca_hash,
                                        state_store_url=cfg.stateStore, s3_endpoint=cfg.s3Endpoint,
                                        s3_region=cfg.s3Region, init_control_plane=cfg.mode == "init",
                                        api_public_host=cfg.apiPublicHost)
        assert data[:2] == b"\x1f\x8b" and len(data) < 16384
        plain = gzip.decompress(data)
        for haystack in (data, plain, encoded.encode(), base64.b64encode(plain)):
            for secret in secrets:
                assert secret not in haystack, f"secret material in the launch template of {ig_name}"
        modes[ig_name] = cfg.mode
        docs[ig_name] = plain.decode()
    assert sorted(modes.values()) == ["init", "join", "join-control-plane", "join-control-plane"], modes

    require_tool("cloud-init")
    require_tool("system-python3")
    proc = subprocess.run(["/usr/bin/python3", str(HERE / "cloudinit_schema_check.py")], input=json.dumps(docs),
                          capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(proc.stdout) == {name: None for name in docs}

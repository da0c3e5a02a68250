"""`kopsy export kubecfg` end to end: the real executable against moto server, a cluster put in
the S3 state store and an API NLB tagged as `update` would tag it (both made with boto3 here)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.tools import require_tool
import yaml
from cryptography import x509

from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.model import cluster_to_dict, instance_group_to_dict

pytestmark = pytest.mark.e2e

NAME = "demo.example.com"


def _put_cluster(s3, cluster_pki) -> None:
    cluster, igs = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    cluster.config_base = f"s3://kopsy-state/{NAME}"
    objects = {"config": yaml.safe_dump(cluster_to_dict(cluster)).encode()}
    for ig in igs:
        objects[f"instancegroup/{ig.name}"] = yaml.safe_dump(instance_group_to_dict(ig)).encode()
    objects.update(cluster_pki.store_objects())
    for rel, body in objects.items():
        s3.put_object(Bucket="kopsy-state", Key=f"{NAME}/{rel}", Body=body)


def _api_nlb(boto, cluster: str, role: str = "api") -> str:
    ec2 = boto("ec2")
    vpc = ec2.create_vpc(CidrBlock="172.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="172.20.32.0/19", AvailabilityZone="us-east-1a")["Subnet"]["SubnetId"]
    tags = {"kubernetes.io/cluster/" + cluster: "owned", "KubernetesCluster": cluster, "kopsy.io/cluster": cluster,
            "Name": f"api.{cluster}", "kopsy.io/role": role}
    lb = boto("elbv2").create_load_balancer(Name="api-demo-example-com", Subnets=[subnet], Type="network",
                                            Scheme="internet-facing",
                                            Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return lb["LoadBalancers"][0]["DNSName"]


def test_export_kubecfg_admin_merges_a_working_context(boto, aws_env, state_bucket, run_kopsy, cluster_pki, tmp_path):
    _put_cluster(boto("s3"), cluster_pki)
    dns = _api_nlb(boto, NAME)
    kubeconfig = Path(aws_env["KUBECONFIG"])
    kubeconfig.parent.mkdir(parents=True)
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "other",
        "clusters": [{"name": "other", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "other", "user": {"token": "x"}}],
        "contexts": [{"name": "other", "context": {"cluster": "other", "user": "other"}}],
    }))

    r = run_kopsy(["--state", state_bucket, "export", "kubecfg", NAME, "--admin", "--ttl", "2h"], aws_env)
    assert r.returncode == 0, r.stderr
    assert f'context "{NAME}" is now current' in r.stdout and f"https://{dns}" in r.stdout
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    assert (kubeconfig.stat().st_mode & 0o777) == 0o600

    kubectl = require_tool("kubectl")
    env = {**aws_env, "KUBECONFIG": str(kubeconfig)}
    ctx = subprocess.run([kubectl, "config", "get-contexts", "-o", "name"], env=env, capture_output=True, text=True)
    assert sorted(ctx.stdout.split()) == ["demo.example.com", "other"]
    view = json.loads(subprocess.run([kubectl, "config", "view", "--raw", "--minify", "-o", "json"], env=env,
                                     capture_output=True, text=True, check=True).stdout)
    assert view["current-context"] == NAME
    assert view["clusters"][0]["cluster"]["server"] == f"https://{dns}"
    cert = x509.load_pem_x509_certificate(base64.b64decode(view["users"][0]["user"]["client-certificate-data"]))
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(cluster_pki.ca_cert))
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 2 * 3600 <= life.total_seconds() <= 2 * 3600 + 600


def test_export_needs_the_load_balancer(boto, aws_env, state_bucket, run_kopsy, cluster_pki):
    _put_cluster(boto("s3"), cluster_pki)
    _api_nlb(boto, "someone-else.example.com")  # another cluster's API NLB is not ours
    r = run_kopsy(["--state", state_bucket, "export", "kubecfg", "--admin"], aws_env)  # the only cluster
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f'Error: cluster "{NAME}" has no API load balancer yet; run "kopsy update cluster {NAME} --yes" first, '
        f"then export again"]
    assert not Path(aws_env["KUBECONFIG"]).exists()


def test_export_usage_errors(aws_env, state_bucket, run_kopsy, tmp_path):
    r = run_kopsy(["--state", state_bucket, "export", "kubecfg", NAME], aws_env)
    assert r.returncode == 2 and "--admin" in r.stderr
    r = run_kopsy(["--state", state_bucket, "export", "kubecfg", "nope.example.com", "--admin"], aws_env)
    assert r.returncode == 1 and 'cluster "nope.example.com" not found' in r.stderr


def test_export_path_choice_default_ttl_and_client_auth(boto, aws_env, state_bucket, run_kopsy, cluster_pki, tmp_path):
    """--kubeconfig beats KUBECONFIG (left untouched); without either, ~/.kube/config; --ttl defaults to 18h."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    _put_cluster(boto("s3"), cluster_pki)
    dns = _api_nlb(boto, NAME)
    env_file = Path(aws_env["KUBECONFIG"])
    flag_file = tmp_path / "elsewhere" / "admin.conf"
    r = run_kopsy(["--state", state_bucket, "export", "kubecfg", "--admin", "--kubeconfig", str(flag_file)], aws_env)
    assert r.returncode == 0, r.stderr
    assert f"kubeconfig {flag_file}:" in r.stdout
    assert not env_file.exists() and (flag_file.stat().st_mode & 0o777) == 0o600

    no_env = {k: v for k, v in aws_env.items() if k != "KUBECONFIG"}
    r = run_kopsy(["--state", state_bucket, "export", "kubecfg", NAME, "--admin"], no_env)
    assert r.returncode == 0, r.stderr
    home_file = Path(aws_env["HOME"]) / ".kube" / "config"
    assert f"kubeconfig {home_file}:" in r.stdout and (home_file.stat().st_mode & 0o777) == 0o600

    kubectl = require_tool("kubectl")
    for path in (flag_file, home_file):
        env = {**no_env, "HOME": str(tmp_path / "nohome")}  # kubectl reads only --kubeconfig
        view = json.loads(subprocess.run([kubectl, "--kubeconfig", str(path), "config", "view", "--raw", "--minify",
                                          "-o", "json"], env=env, capture_output=True, text=True, check=True).stdout)
        assert view["current-context"] == NAME and view["clusters"][0]["cluster"]["server"] == f"https://{dns}"
        cert = x509.load_pem_x509_certificate(base64.b64decode(view["users"][0]["user"]["client-certificate-data"]))
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(cluster_pki.ca_cert))
        assert 18 * 3600 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() <= 18 * 3600 + 600
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(usage) == [ExtendedKeyUsageOID.CLIENT_AUTH]

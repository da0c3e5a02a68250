"""``kopsy get secrets`` and ``kopsy create secret sshpublickey``, through the real CLI.

get secrets lists type, id and creation time and never a value; ``-o plaintext`` prints one named
Secret and refuses keypairs (private keys are never printed). A new SSH key set with create
secret is rolled out by the next update: a new EC2 key pair and new launch-template versions.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import create_cluster, register_image

pytestmark = pytest.mark.e2e

NAME = "secrets.example.com"


def _object(boto: Callable[[str], Any], key: str) -> bytes:
    return bytes(boto("s3").get_object(Bucket="kopsy-state", Key=f"{NAME}/{key}")["Body"].read())


def _secret_material(boto: Callable[[str], Any]) -> list[str]:
    """Strings that must never be printed: every private key's PEM body lines and the token's secret half."""
    out = []
    for key in ("pki/ca.key", "pki/front-proxy-ca.key", "pki/etcd/ca.key", "pki/sa.key"):
        out += [line for line in _object(boto, key).decode().splitlines() if line and not line.startswith("-----")]
    token = _object(boto, "secrets/bootstrap-token").decode().strip()
    out.append(token.split(".", 1)[1])
    return out


def test_get_secrets_lists_without_values_and_plaintext_only_by_name(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path]
) -> None:
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], "ami-12345678")
    secrets = _secret_material(boto)
    token = _object(boto, "secrets/bootstrap-token").decode().strip()

    outputs = []
    r = run_kopsy(["get", "secrets"], env)
    assert r.returncode == 0, r.stderr
    outputs.append(r.stdout + r.stderr)
    rows = [line.split() for line in r.stdout.splitlines()]
    assert rows[0] == ["TYPE", "NAME", "ID", "CREATED"]
    assert {(row[0], row[1]) for row in rows[1:]} == {
        ("Keypair", "kubernetes-ca"), ("Keypair", "front-proxy-ca"), ("Keypair", "etcd-ca"),
        ("Keypair", "service-account"), ("Secret", "bootstrap-token"), ("SSHPublicKey", "admin"),
    }
    assert all(row[3].startswith("20") and row[3].endswith("Z") for row in rows[1:])
    (tok,) = [row for row in rows if row[1] == "bootstrap-token"]
    assert tok[2] == token.split(".")[0]  # the token's public id half, never the secret half

    r = run_kopsy(["get", "secrets", "--type", "secret", "-o", "json"], env)
    assert r.returncode == 0, r.stderr
    outputs.append(r.stdout + r.stderr)
    assert [e["name"] for e in json.loads(r.stdout)] == ["bootstrap-token"]
    r = run_kopsy(["get", "secrets", "-o", "yaml"], env)
    assert r.returncode == 0, r.stderr
    outputs.append(r.stdout + r.stderr)

    # a value only when asked for by name, with a warning that it is one
    r = run_kopsy(["get", "secrets", "bootstrap-token", "-o", "plaintext"], env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == token and "Warning:" in r.stderr and "secret" in r.stderr
    for refused in (["get", "secrets", "-o", "plaintext"], ["get", "secrets", "kubernetes-ca", "-o", "plaintext"],
                    ["get", "secrets", "service-account", "-o", "plaintext"], ["get", "secrets", "--type", "bogus"]):
        r = run_kopsy(refused, env)
        assert r.returncode != 0, refused
        assert r.stderr.startswith("Error: ") and r.stdout == ""
        outputs.append(r.stdout + r.stderr)
    everything = "\n".join(outputs)
    for s in secrets:
        assert s not in everything
    assert "PRIVATE KEY" not in everything


def test_a_new_ssh_key_is_rolled_out_by_the_next_update(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    assert run_kopsy(["update", "--yes"], env).returncode == 0
    ec2 = boto("ec2")
    owner = [{"Name": f"tag:kopsy.io/cluster", "Values": [NAME]}]
    (old_pair,) = ec2.describe_key_pairs(Filters=owner)["KeyPairs"]
    versions = {t["LaunchTemplateName"]: t["LatestVersionNumber"] for t in ec2.describe_launch_templates(Filters=owner)["LaunchTemplates"]}

    new_pub = tmp_path / "new_ed25519.pub"
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    new_pub.write_text(line + " new@example\n")
    r = run_kopsy(["create", "secret", "sshpublickey", "admin", "-i", str(new_pub), "--name", NAME], env)
    assert r.returncode == 0, r.stderr
    assert "kopsy update cluster" in r.stdout
    assert _object(boto, "ssh/public/admin").decode().split()[:2] == line.split()[:2]
    r = run_kopsy(["get", "secrets", "admin", "-o", "json"], env)
    blob = base64.b64decode(line.split()[1])
    import hashlib

    assert json.loads(r.stdout)["id"] == "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")

    plan = run_kopsy(["update", "--detailed-exitcode"], env)
    assert plan.returncode == 2, plan.stdout + plan.stderr
    assert "KeyPair/" in plan.stdout and "LaunchTemplate/" in plan.stdout
    r = run_kopsy(["update", "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    (new_pair,) = ec2.describe_key_pairs(Filters=owner)["KeyPairs"]
    assert new_pair["KeyName"] != old_pair["KeyName"]
    for t in ec2.describe_launch_templates(Filters=owner)["LaunchTemplates"]:
        assert t["LatestVersionNumber"] == versions[t["LaunchTemplateName"]] + 1
        latest = ec2.describe_launch_template_versions(LaunchTemplateId=t["LaunchTemplateId"], Versions=["$Latest"])
        assert latest["LaunchTemplateVersions"][0]["LaunchTemplateData"]["KeyName"] == new_pair["KeyName"]
    assert run_kopsy(["update", "--detailed-exitcode"], env).returncode == 0

    # the same key again changes nothing
    r = run_kopsy(["create", "secret", "sshpublickey", "admin", "-i", str(new_pub)], env)
    assert r.returncode == 0 and "nothing to do" in r.stdout
    r = run_kopsy(["create", "secret", "sshpublickey", "admin", "-i", str(ssh_keypair[0])], env)  # a private key
    assert r.returncode != 0 and r.stderr.startswith("Error: ")

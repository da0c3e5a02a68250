"""``kopsy toolbox dump`` and ``kopsy get instances`` end to end in the sandbox, where the control
plane answers over SSH: every cloud resource, every instance with its addresses and template
version, the nodes kubectl lists, and no secret material anywhere in the output."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import Sandbox

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "dump.example.com"


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def _secret_material(sb: Sandbox) -> list[str]:
    s3 = sb.clients().client("s3")

    def obj(key: str) -> str:
        return s3.get_object(Bucket=sb.info.bucket, Key=f"{NAME}/{key}")["Body"].read().decode()

    out = []
    for key in ("pki/ca.key", "pki/front-proxy-ca.key", "pki/etcd/ca.key", "pki/sa.key"):
        out += [line for line in obj(key).splitlines() if line and not line.startswith("-----")]
    out.append(obj("secrets/bootstrap-token").strip().split(".", 1)[1])
    return out


def test_dump_and_get_instances_through_the_cli(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    sb = sandbox
    key, _ = admin_key
    _ok(sb.kopsy("create", "cluster", NAME, "--zones", "us-east-1a", "--node-count", "2",
                 "--ssh-public-key", str(key.with_suffix(".pub"))))
    _ok(sb.kopsy("update", "cluster", NAME, "--yes"))
    _ok(sb.kopsy("validate", "cluster", NAME, "--wait", "60s", "--interval", "1s", "--ssh-key", str(key)))

    out = _ok(sb.kopsy("toolbox", "dump", NAME, "-o", "json", "--ssh-key", str(key)))
    doc = json.loads(out)
    assert doc["kind"] == "ClusterDump" and doc["cluster"] == NAME
    kinds = {r["kind"] for r in doc["resources"]}
    assert {"VPC", "Subnet", "SecurityGroup", "IAMRole", "LaunchTemplate", "AutoScalingGroup", "LoadBalancer",
            "KeyPair", "Instance"} <= kinds, kinds
    assert all(r["id"] and r["tags"].get("kopsy.io/cluster") == NAME for r in doc["resources"] if r["kind"] not in ("IAMRole", "IAMInstanceProfile"))
    instances = doc["instances"]
    assert len(instances) == 3
    for i in instances:
        assert i["state"] == "running" and i["privateIp"] and i["zone"] == "us-east-1a"
        assert i["launchTemplate"]["name"] == f"{i['instanceGroup']}.{NAME}" and i["launchTemplate"]["version"] == "1"
    assert sorted(i["role"] for i in instances) == ["ControlPlane", "Node", "Node"]
    assert doc["nodes"] is not None and len(doc["nodes"]) == 3 and all(n["ready"] for n in doc["nodes"]), doc["notes"]
    assert {n["instanceId"] for n in doc["nodes"]} == {i["id"] for i in instances}

    yaml_out = _ok(sb.kopsy("toolbox", "dump", NAME, "--no-ssh"))
    assert "kind: ClusterDump" in yaml_out and "--no-ssh" in yaml_out

    table = _ok(sb.kopsy("get", "instances", "--name", NAME))
    rows = [line.split() for line in table.splitlines()]
    assert rows[0] == ["ID", "NODE-NAME", "STATUS", "ROLES", "STATE", "INTERNAL-IP", "INSTANCE-GROUP", "MACHINE-TYPE",
                       "K8S-VERSION"]
    assert {r[0] for r in rows[1:]} == {i["id"] for i in instances}
    listed = json.loads(_ok(sb.kopsy("get", "instances", "--name", NAME, "-o", "json", "--ssh-config",
                                     str(sb.layout.ssh_config))))
    assert {(i["id"], i["privateDns"], i["state"], i["instanceGroup"], i["type"]) for i in instances} == \
        {(i["id"], i["nodeName"], i["state"], i["instanceGroup"], i["machineType"]) for i in listed}
    assert {i["status"] for i in listed} == {"UpToDate"} and {i["launchTemplateVersion"] for i in listed} == {"1"}

    everything = out + yaml_out + table
    for s in _secret_material(sb):
        assert s not in everything
    assert "PRIVATE KEY" not in everything and "UserData" not in everything
    _ok(sb.kopsy("delete", "cluster", NAME, "--yes"))


def test_dump_says_why_there_are_no_nodes_when_ssh_fails(sandbox: Sandbox, admin_key: tuple[Path, str], tmp_path: Path) -> None:
    sb = sandbox
    key, _ = admin_key
    name = "nossh.example.com"
    _ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a", "--node-count", "1",
                 "--ssh-public-key", str(key.with_suffix(".pub"))))
    _ok(sb.kopsy("update", "cluster", name, "--yes"))
    wrong = tmp_path / "wrong_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    doc: dict[str, Any] = json.loads(_ok(sb.kopsy("toolbox", "dump", name, "-o", "json", "--ssh-key", str(wrong))))
    assert doc["nodes"] is None and any("SSH" in n for n in doc["notes"]), doc["notes"]
    assert len(doc["instances"]) == 2
    _ok(sb.kopsy("delete", "cluster", name, "--yes"))

"""`kopsy validate` through the sandbox, the whole user path with the real executable:
`kopsy sandbox up` -> `create cluster` -> `update cluster --yes` -> `validate`, and each fault
the sandbox issue names (sshd down, wrong endpoint in user-data, security-group rule removed)
failing validation with the node and the reason; `--wait` turning green on repair; a changed
host key refused.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from validate_doubles import (
    launch_with_wrong_endpoint,
    poll,
    role_of,
    tagged_instances,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
Run = Callable[..., subprocess.CompletedProcess[str]]


class Sandbox:
    def __init__(self, directory: Path, env: dict[str, str], run: Run) -> None:
        self.dir = directory
        self.env = env
        self._run = run

    def kopsy(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self._run(list(args), self.env, timeout=timeout)

    def boto(self, service: str) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1").client(service, endpoint_url=self.env["AWS_ENDPOINT_URL"])


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    import os
    import sys

    base = tmp_path_factory.mktemp("validate-sandbox")
    home = base / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env["HOME"] = str(home)
    kopsy = str(Path(sys.executable).parent / "kopsy")

    def run(args: list[str], e: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([kopsy, *args], env=e, capture_output=True, text=True, timeout=timeout)

    d = base / "sb"
    # Instances join at once (--boot-time 0): these tests validate right after update, without --wait.
    up = run(["sandbox", "up", "--dir", str(d), "--boot-time", "0"], env, timeout=90)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        exports = run(["sandbox", "env", "--dir", str(d)], env)
        for k, v in re.findall(r"^export (\w+)=(\S+)$", exports.stdout, re.M):
            env[k] = v.strip("'\"")
        env.pop("AWS_PROFILE", None)
        assert env["AWS_ENDPOINT_URL"].startswith("http://127.") and env.get("KOPSY_SSH_CONFIG")
        yield Sandbox(d, env, run)
    finally:
        down = run(["sandbox", "down", "--dir", str(d)], env, timeout=60)
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("validate-keys") / "admin"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


_cidr = iter(range(30, 250))


def make_cluster(sb: Sandbox, key: Path, name: str, *create_args: str) -> dict[str, dict[str, Any]]:
    """create + update --yes for real; returns the cluster's instances by id once their sshds serve."""
    r = sb.kopsy("create", "cluster", name, "--zones", "us-east-1a", "--ssh-public-key", f"{key}.pub",
                 # clusters share the sandbox: give each its own private range (addresses repeat across VPCs)
                 "--network-cidr", f"10.{next(_cidr)}.0.0/16", *create_args)
    assert r.returncode == 0, r.stderr
    r = sb.kopsy("update", "cluster", name, "--yes", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    ec2 = sb.boto("ec2")
    instances = tagged_instances(ec2, name)
    ssh_config = Path(sb.env["KOPSY_SSH_CONFIG"])
    poll(lambda: all(i["PrivateIpAddress"] in ssh_config.read_text() for i in tagged_instances(ec2, name).values()),
         timeout=30)
    return tagged_instances(ec2, name)


def validate_json(sb: Sandbox, name: str, *args: str) -> tuple[int, dict[str, Any], str]:
    r = sb.kopsy("validate", "cluster", name, "-o", "json", *args)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}, r.stderr


def test_healthy_one_control_plane_two_nodes(sandbox: Sandbox, key: Path) -> None:
    name = "healthy.example.com"
    instances = make_cluster(sandbox, key, name)
    r = sandbox.kopsy("--debug", "validate", "cluster", name)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Your cluster {name} is ready" in r.stdout
    assert r.stdout.count(" True") == 3 and len(instances) == 3
    assert "debug: this validation opened 1 SSH connection(s)" in r.stderr  # healthy: one session


def test_healthy_three_control_planes(sandbox: Sandbox, key: Path) -> None:
    name = "ha.example.com"
    make_cluster(sandbox, key, name, "--control-plane-count", "3")
    code, doc, err = validate_json(sandbox, name)
    assert code == 0, doc or err
    assert sorted(n["role"] for n in doc["nodes"]) == ["ControlPlane"] * 3 + ["Node"] * 2
    assert all(n["ready"] for n in doc["nodes"])


def test_faults_fail_with_node_and_reason_and_wait_turns_green(sandbox: Sandbox, key: Path) -> None:
    name = "faults.example.com"
    instances = make_cluster(sandbox, key, name)
    ec2 = sandbox.boto("ec2")
    nodes = sorted(i for i, inst in instances.items() if role_of(inst) == "Node")
    assert validate_json(sandbox, name)[0] == 0

    # 1. a node's machine goes down (its sshd stops)
    victim = nodes[0]
    assert sandbox.kopsy("sandbox", "stop-node", "--dir", str(sandbox.dir), victim).returncode == 0
    code, doc, _ = validate_json(sandbox, name)
    assert code == 1
    failure = next(f for f in doc["failures"] if f["type"] in ("Node", "Machine"))
    assert failure["name"] in (victim, instances[victim]["PrivateDnsName"])
    assert "cannot be reached over SSH" in failure["message"]

    # ... and --wait turns green once it is started again
    waiting = subprocess.Popen(_kopsy_cmd("validate", "cluster", name, "--wait", "90s", "--interval", "1s"),
                               env=sandbox.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert waiting.stderr is not None
        line = ""
        while "attempt 1:" not in line:
            line = waiting.stderr.readline()
            assert line, "validate --wait ended before its first progress line"
        assert sandbox.kopsy("sandbox", "start-node", "--dir", str(sandbox.dir), victim).returncode == 0
        out, err = waiting.communicate(timeout=90)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, out + err
    assert f"Your cluster {name} is ready" in out

    # 2. a security-group rule removed: control plane -> nodes
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [name]}])["SecurityGroups"]}
    cp_sg, nodes_sg = groups[f"control-plane.{name}"], groups[f"nodes.{name}"]
    # kopsy marks its rules with a description; moto (unlike AWS) wants it named to revoke a group rule
    rule = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": cp_sg, "Description": f"kopsy.io/cluster={name}"}]}]
    ec2.revoke_security_group_ingress(GroupId=nodes_sg, IpPermissions=rule)
    code, doc, _ = validate_json(sandbox, name)
    assert code == 1
    named = {f["name"] for f in doc["failures"]}
    assert {instances[n]["PrivateDnsName"] for n in nodes} <= named | set(nodes)
    assert any("security group" in f["message"].lower() for f in doc["failures"]), doc
    ec2.authorize_security_group_ingress(GroupId=nodes_sg, IpPermissions=rule)
    assert validate_json(sandbox, name)[0] == 0

    # 3. an instance whose user-data names the wrong API endpoint never joins
    bad_id = launch_with_wrong_endpoint(ec2, instances[nodes[1]])[0]
    ssh_config = Path(sandbox.env["KOPSY_SSH_CONFIG"])
    poll(lambda: bad_id in ssh_config.read_text(), timeout=30)
    code, doc, _ = validate_json(sandbox, name)
    assert code == 1
    failure = next(f for f in doc["failures"] if f["name"] == bad_id)
    assert failure["type"] == "Machine" and "has not joined" in failure["message"]
    assert "wrong.example.com" in failure["message"] and "wait-for-api" in failure["message"]
    ec2.terminate_instances(InstanceIds=[bad_id])


def test_changed_host_key_is_refused(sandbox: Sandbox, key: Path) -> None:
    name = "hostkey.example.com"
    make_cluster(sandbox, key, name, "--node-count", "1")
    r = sandbox.kopsy("validate", "cluster", name)
    assert r.returncode == 0 and "Note: recorded the host key" in r.stderr, r.stdout + r.stderr
    known = Path(sandbox.env["HOME"]) / ".kopsy" / "known_hosts" / name
    host, keytype, _ = known.read_text().split()
    other = Path(str(key) + ".other")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    # what validate would see if the instance at that address had been replaced (or spoofed)
    known.write_text(f"{host} ssh-ed25519 {other.with_suffix('.other.pub').read_text().split()[1]}\n")
    r = sandbox.kopsy("validate", "cluster", name)
    assert r.returncode == 1
    assert "REFUSED" in r.stderr and "has CHANGED" in r.stderr and f"ssh-keygen -R '{host}'" in r.stderr
    assert "Your cluster" not in r.stdout


def _kopsy_cmd(*args: str) -> list[str]:
    import sys

    return [str(Path(sys.executable).parent / "kopsy"), *args]


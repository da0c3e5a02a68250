"""`kopsy validate` end to end: the real executable, a real S3 state store in moto, moto instances
with kopsy's names and tags (docs/update.md), and loopback sshd doubles behind an ssh config (KOPSY_SSH_CONFIG)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from validate_doubles import FakeCluster

CLUSTER = "demo.example.com"
KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"
pytestmark = pytest.mark.e2e
Run = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class Setup:
    fc: FakeCluster
    env: dict[str, str]

    @property
    def known_hosts(self) -> Path:
        return Path(self.env["HOME"]) / ".kopsy" / "known_hosts" / CLUSTER


@pytest.fixture
def make_setup(aws_env: dict[str, str], state_bucket: str, run_kopsy: Run, clients: Any,
               fake_cluster: Callable[..., FakeCluster], ssh_keypair: tuple[Path, Path]) -> Callable[..., Setup]:
    """`kopsy create cluster` for real, then instances for its groups as `update` would launch them."""

    def make(*create_args: str) -> Setup:
        env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
        r = run_kopsy(["create", "cluster", CLUSTER, "--zones", "us-east-1a",
                       "--ssh-public-key", str(ssh_keypair[1]), *create_args], env)
        assert r.returncode == 0, r.stderr
        from kopsy.state import open_store
        from kopsy.state.clusters import ClusterStore

        store = ClusterStore(open_store(state_bucket, clients=clients))
        groups = [(ig.name, ig.role, ig.min_size) for ig, _ in store.list_instance_groups(CLUSTER)]
        fc = fake_cluster(groups)
        fc.write_ssh_config(identity=False)  # the key must come from the create-time path (docs/validate.md, "SSH")
        env["KOPSY_SSH_CONFIG"] = str(fc.ssh_config)
        return Setup(fc, env)

    return make


def test_healthy_cluster_table_and_tofu_said_once(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    r = run_kopsy(["validate", "cluster", CLUSTER], s.env)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for heading in ("INSTANCE GROUPS", "NODE STATUS", "MACHINETYPE", "READY", f"Your cluster {CLUSTER} is ready"):
        assert heading in out
    assert "VALIDATION ERRORS" not in out
    for h in s.fc.hosts:
        assert h.private_dns in out
    assert out.count("True") == 3 and "control-plane" in out
    assert r.stderr.count("Note: recorded the host key") == 1
    assert s.known_hosts.is_file()
    again = run_kopsy(["--debug", "validate"], s.env)
    assert again.returncode == 0 and "Note:" not in again.stderr
    assert "debug: this validation opened 1 SSH connection(s)" in again.stderr


def test_three_control_planes_json(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup("--control-plane-count", "3")
    r = run_kopsy(["validate", "-o", "json"], s.env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"failures", "nodes"} and doc["failures"] == []
    assert all(set(n) == {"name", "instanceId", "role", "instanceGroup", "ready"} for n in doc["nodes"])
    assert sorted(n["role"] for n in doc["nodes"]) == ["ControlPlane"] * 3 + ["Node"] * 2
    assert all(n["ready"] and n["instanceId"].startswith("i-") and n["instanceGroup"] for n in doc["nodes"])


def test_broken_node_fails_with_reason_in_every_format(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    broken = s.fc.nodes[0]
    s.fc.set_state(broken.instance_id, "bootfail")
    table = run_kopsy(["validate", CLUSTER], s.env)
    assert table.returncode == 1
    assert "VALIDATION ERRORS" in table.stdout and "KIND" in table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith("Machine"))
    assert broken.instance_id in row and "bootstrap failed in phase kubeadm-join" in row
    assert "bootstrap log: 00:10:00 kubeadm join failed" in table.stdout
    assert table.stdout.rstrip().endswith("Validation failed")
    assert f"Error: cluster {CLUSTER} is not ready: 1 validation error(s)" in table.stderr

    as_json = run_kopsy(["validate", "-o", "json"], s.env)
    assert as_json.returncode == 1
    failure = json.loads(as_json.stdout)["failures"][0]
    assert set(failure) == {"type", "name", "message", "details"}  # details: the bootstrap log tail
    assert (failure["type"], failure["name"]) == ("Machine", broken.instance_id)
    assert "couldn't validate the identity of the API Server" in failure["message"]
    as_yaml = run_kopsy(["validate", "-o", "yaml"], s.env)
    assert as_yaml.returncode == 1
    assert yaml.safe_load(as_yaml.stdout)["failures"][0]["name"] == broken.instance_id


def test_unreachable_node(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    dead = s.fc.nodes[1]
    s.fc.set_state(dead.instance_id, "down")
    r = run_kopsy(["validate"], s.env)
    assert r.returncode == 1
    assert "cannot be reached over SSH" in r.stdout and dead.instance_id in r.stdout


def test_wait_turns_green_when_the_node_is_repaired(make_setup: Callable[..., Setup]) -> None:
    s = make_setup()
    broken = s.fc.nodes[0]
    s.fc.set_state(broken.instance_id, "bootfail")
    proc = subprocess.Popen([KOPSY, "validate", "--wait", "60s", "--interval", "1s"], env=s.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stderr is not None
        seen = []
        while not any("attempt 1:" in line for line in seen):  # the first poll has reported the failure
            line = proc.stderr.readline()
            assert line, f"validate ended early: {seen}"
            seen.append(line)
        assert broken.instance_id in seen[-1] and "next check in 1s" in seen[-1]
        s.fc.set_state(broken.instance_id, "ready")  # repaired mid-wait
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, "".join(seen) + err
    assert f"Your cluster {CLUSTER} is ready" in out


def test_wait_gives_up_at_the_deadline(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    s.fc.set_state(s.fc.nodes[0].instance_id, "notready")
    r = run_kopsy(["validate", "--wait", "2s", "--interval", "1s", "-o", "json"], s.env)
    assert r.returncode == 1
    assert "attempt 1:" in r.stderr and "is not ready within 2s" in r.stderr
    assert json.loads(r.stdout)["failures"][0]["type"] == "Node"


def test_changed_host_key_refused(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    assert run_kopsy(["validate"], s.env).returncode == 0
    cp = s.fc.control_planes[0]
    cp.sshd.stop()
    cp.sshd.new_host_key()
    cp.sshd.start()
    r = run_kopsy(["validate"], s.env)
    assert r.returncode == 1
    assert r.stderr.startswith("Error: REFUSED: the host key of") and "ssh-keygen -R" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    # Doing what the message says makes validate accept the replaced instance's key.
    forget = subprocess.run(["ssh-keygen", "-R", f"[{cp.sshd.ip}]:{cp.sshd.port}", "-f", str(s.known_hosts)],
                            capture_output=True)
    assert forget.returncode == 0
    r = run_kopsy(["validate"], s.env)
    assert r.returncode == 0 and "Note: recorded the host key" in r.stderr


def test_ssh_user_flag_beats_the_ssh_config(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    r = run_kopsy(["validate", "--ssh-user", "nobody-here"], s.env)
    assert r.returncode == 1
    assert "refused to log in user 'nobody-here'" in r.stdout


@pytest.mark.parametrize("args", [["validate", "a.example.com", "b.example.com"], ["validate", "--count", "2"],
                                  ["validate", "-o", "xml"], ["validate", "--wait", "soon"],
                                  ["validate", "--bastion", "admin@bastion:ssh"],
                                  ["validate", "--connect-timeout", "0s"]])
def test_usage_errors_exit_2(args: list[str], aws_env: dict[str, str], run_kopsy: Run) -> None:
    r = run_kopsy(args, {**aws_env, "KOPSY_STATE_STORE": "file:///nonexistent"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("Error:") or "Usage:" in r.stderr


def test_count_needs_consecutive_successes(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    r = run_kopsy(["validate", "--wait", "60s", "--interval", "0.2s", "--count", "2"], s.env)
    assert r.returncode == 0, r.stdout + r.stderr
    progress = [line for line in r.stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 1 and "attempt 1: cluster demo.example.com is ready (1/2 consecutive successes)" \
        in progress[0] and "next check in 0.2s" in progress[0]
    assert f"Your cluster {CLUSTER} is ready" in r.stdout


def test_ssh_key_flag_is_the_only_key_used(make_setup: Callable[..., Setup], run_kopsy: Run,
                                           ssh_keypair: tuple[Path, Path], tmp_path: Path) -> None:
    s = make_setup()  # the ssh config has no IdentityFile: by default the create-time key logs in
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    r = run_kopsy(["validate", "--ssh-key", str(stranger)], s.env)
    assert r.returncode == 1
    assert f"refused to log in user '{s.fc.user}' with key(s) {stranger}" in r.stdout  # not the cluster's key too
    r = run_kopsy(["validate", "--ssh-key", str(tmp_path / "absent")], s.env)
    assert r.returncode == 2 and "--ssh-key" in r.stderr and "does not exist" in r.stderr  # a usage error
    copy = tmp_path / "copy-of-admin"
    shutil.copy(ssh_keypair[0], copy)
    ssh_keypair[0].rename(tmp_path / "moved")  # nothing beside the create-time path any more
    assert run_kopsy(["validate"], s.env).returncode == 1
    r = run_kopsy(["validate", "--ssh-key", str(copy)], s.env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bastion_flag_reaches_private_addresses(make_setup: Callable[..., Setup], run_kopsy: Run,
                                                tmp_path: Path) -> None:
    from validate_doubles import SshdDouble

    s = make_setup()
    broken = s.fc.nodes[0]
    s.fc.set_state(broken.instance_id, "bootfail")
    bastion = SshdDouble(tmp_path / "bastion", s.fc.workdir / "authorized_keys")
    bastion.start()
    try:
        # Only the private addresses (and the bastion) are mapped: a public address must not be used.
        text = s.fc.ssh_config.read_text()
        for h in s.fc.hosts:
            text = text.replace(f"Host {h.public_ip} ", "Host ")
        s.fc.ssh_config.write_text(f"Host bastion.example.com\n  HostName {bastion.ip}\n  Port {bastion.port}\n\n"
                                   + text)
        r = run_kopsy(["--debug", "validate", "-o", "json", "--bastion", f"{s.fc.user}@bastion.example.com"], s.env)
        assert r.returncode == 1, r.stderr
        (failure,) = json.loads(r.stdout)["failures"]
        assert (failure["type"], failure["name"]) == ("Machine", broken.instance_id)
        assert "bootstrap failed in phase kubeadm-join" in failure["message"]
        assert "debug: this validation opened 3 SSH connection(s)" in r.stderr  # bastion, control plane, node
        assert f"[{bastion.ip}]:{bastion.port}" in s.known_hosts.read_text()
        bastion.stop()
        r = run_kopsy(["validate", "--bastion", "bastion.example.com"], s.env)
        assert r.returncode == 1 and "connection refused" in r.stdout
    finally:
        bastion.stop()


def test_home_ssh_config_is_honoured_without_ssh_config(make_setup: Callable[..., Setup], run_kopsy: Run) -> None:
    s = make_setup()
    env = {k: v for k, v in s.env.items() if k != "KOPSY_SSH_CONFIG"}
    # (no run without it: kopsy would dial moto's public-looking addresses, and tests stay on loopback)
    ssh_dir = Path(env["HOME"]) / ".ssh"
    ssh_dir.mkdir(exist_ok=True)
    (ssh_dir / "config").write_text(s.fc.ssh_config.read_text())
    r = run_kopsy(["validate"], env)
    assert r.returncode == 0, r.stdout + r.stderr  # the loopback mapping came from ~/.ssh/config


def test_missing_files_named_by_flags_are_usage_errors_even_under_wait(make_setup: Callable[..., Setup],
                                                                       run_kopsy: Run, tmp_path: Path) -> None:
    """Not a poll failure: waiting cannot make a mistyped path appear, so --wait must not retry it."""
    s = make_setup()
    absent = tmp_path / "absent"
    for args, env in ((["--ssh-config", str(absent)], s.env), ([], {**s.env, "KOPSY_SSH_CONFIG": str(absent)}),
                      (["--ssh-key", str(absent)], s.env)):
        r = run_kopsy(["validate", "--wait", "20s", "--interval", "1s", *args], env)
        assert r.returncode == 2, r.stderr
        assert str(absent) in r.stderr and "does not exist" in r.stderr and "attempt 1" not in r.stderr

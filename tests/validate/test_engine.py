"""The validation engine against moto instances and real loopback sshd doubles."""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kopsy.errors import HostKeyChanged
from kopsy.spec.model import InstanceGroup
from kopsy.remote import SSHConnector, SSHSettings
from kopsy.validate import validate_cluster
from validate_doubles import FakeCluster, SshdDouble

pytestmark = pytest.mark.slow  # real sshd processes and moto server, seconds per case

CLUSTER = "demo.example.com"
ONE_CP = [("control-plane-us-east-1a", "ControlPlane", 1), ("nodes-us-east-1a", "Node", 2)]


def groups_of(spec: list[tuple[str, str, int]], min_size: int | None = None) -> list[InstanceGroup]:
    return [InstanceGroup(name=n, cluster_name=CLUSTER, role=r, machine_type="t3.medium",
                          min_size=c if min_size is None else min_size, max_size=c, subnets=["us-east-1a"])
            for n, r, c in spec]


def settings(fc: FakeCluster, tmp_path: Path, **kw: Any) -> SSHSettings:
    return SSHSettings(known_hosts=tmp_path / "known_hosts" / CLUSTER, config_path=fc.ssh_config,
                       connect_timeout=5, command_timeout=10, **kw)


def run(fc: FakeCluster, spec: list[tuple[str, str, int]], clients: Any, tmp_path: Path, **kw: Any) -> Any:
    return validate_cluster(CLUSTER, groups_of(spec), clients, SSHConnector(settings(fc, tmp_path, **kw)))


def test_healthy_one_control_plane_costs_one_ssh_connection(fake_cluster: Callable[..., FakeCluster],
                                                            clients: Any, tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    result = run(fc, ONE_CP, clients, tmp_path)
    assert result.valid, result.failures
    assert result.ssh_connections == 1
    assert sorted(n.instance_id for n in result.nodes) == sorted(h.instance_id for h in fc.hosts)
    assert all(n.ready for n in result.nodes)
    assert [n.role for n in result.nodes] == ["ControlPlane", "Node", "Node"]
    assert {n.name for n in result.nodes} == {h.private_dns for h in fc.hosts}


def test_healthy_three_control_planes(fake_cluster: Callable[..., FakeCluster], clients: Any, tmp_path: Path) -> None:
    spec = [("control-plane-us-east-1a", "ControlPlane", 3), ("nodes-us-east-1a", "Node", 2)]
    fc = fake_cluster(spec)
    result = run(fc, spec, clients, tmp_path)
    assert result.valid, result.failures
    assert result.ssh_connections == 1
    assert sum(1 for n in result.nodes if n.role == "ControlPlane") == 3


def test_not_joined_node_reports_bootstrap_phase_and_error(fake_cluster: Callable[..., FakeCluster],
                                                          clients: Any, tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    broken = fc.nodes[0]
    fc.set_state(broken.instance_id, "bootfail")
    result = run(fc, ONE_CP, clients, tmp_path)
    assert not result.valid
    assert [(f.type, f.name) for f in result.failures] == [("Machine", broken.instance_id)]
    msg = result.failures[0].message
    assert "has not joined the cluster" in msg
    assert "bootstrap failed in phase kubeadm-join" in msg and "couldn't validate the identity" in msg
    assert "cloud-init error" in msg and "Runparts" in msg
    assert any("phase kubeadm-join: running kubeadm join" in d for d in result.failures[0].details)
    assert result.ssh_connections == 2  # the control plane, then the broken node through it
    assert [n.ready for n in result.nodes if n.instance_id == broken.instance_id] == [False]


def test_not_ready_node_names_kubelet_reason(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                            tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    sick = fc.nodes[1]
    fc.set_state(sick.instance_id, "notready")
    result = run(fc, ONE_CP, clients, tmp_path)
    assert [(f.type, f.name) for f in result.failures] == [("Node", sick.private_dns)]
    assert "KubeletNotReady" in result.failures[0].message
    assert "cni plugin not initialized" in result.failures[0].message
    assert "bootstrap is at phase done with no error" in result.failures[0].message


def test_unreachable_node_is_said_so(fake_cluster: Callable[..., FakeCluster], clients: Any, tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    dead = fc.nodes[0]
    fc.set_state(dead.instance_id, "down")
    result = run(fc, ONE_CP, clients, tmp_path)
    assert [(f.type, f.name) for f in result.failures] == [("Machine", dead.instance_id)]
    msg = result.failures[0].message
    assert "cannot be reached over SSH" in msg
    assert f"{dead.sshd.ip}:{dead.sshd.port}" in msg


def test_control_plane_down(fake_cluster: Callable[..., FakeCluster], clients: Any, tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    fc.set_state(fc.control_planes[0].instance_id, "down")
    result = run(fc, ONE_CP, clients, tmp_path)
    assert [f.type for f in result.failures] == ["ControlPlane"]
    assert "cannot be reached over SSH" in result.failures[0].message
    assert "connection refused" in result.failures[0].message
    assert not any(n.ready for n in result.nodes)


def test_control_plane_that_cannot_answer_is_diagnosed(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                       tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    fc.set_state(fc.control_planes[0].instance_id, "bootfail")
    result = run(fc, ONE_CP, clients, tmp_path)
    assert [f.type for f in result.failures] == ["ControlPlane"]
    msg = result.failures[0].message
    assert "cannot list nodes and pods" in msg and "localhost:8080 was refused" in msg
    assert "bootstrap failed in phase kubeadm-join" in msg
    assert result.ssh_connections == 1  # diagnosed on the same connection


def test_second_control_plane_answers_when_first_is_down(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                         tmp_path: Path) -> None:
    spec = [("control-plane-us-east-1a", "ControlPlane", 3), ("nodes-us-east-1a", "Node", 1)]
    fc = fake_cluster(spec)
    first = fc.control_planes[0]
    fc.set_state(first.instance_id, "down")
    result = run(fc, spec, clients, tmp_path)
    assert [(f.type, f.name) for f in result.failures] == [("Machine", first.instance_id)]
    assert "cannot be reached over SSH" in result.failures[0].message


def test_instance_group_below_min_size_and_missing_asg(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                       tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    igs = groups_of(ONE_CP) + groups_of([("extra", "Node", 1)])
    igs[1].min_size = 3
    result = validate_cluster(CLUSTER, igs, clients, SSHConnector(settings(fc, tmp_path)))
    msgs = {f.name: f.message for f in result.failures if f.type == "InstanceGroup"}
    assert "fewer than its minSize 3" in msgs["nodes-us-east-1a"]
    assert "extra.demo.example.com does not exist" in msgs["extra"]


def test_trust_on_first_use_is_recorded_and_reported_once(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                          tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    cp = fc.control_planes[0]
    first = run(fc, ONE_CP, clients, tmp_path)
    assert len(first.notices) == 1 and "trust on first use" in first.notices[0]
    assert f"[{cp.sshd.ip}]:{cp.sshd.port}" in first.notices[0]
    known = (tmp_path / "known_hosts" / CLUSTER).read_text()
    pub = cp.sshd.host_key.with_suffix(".pub").read_text().split()[1]
    assert known.split() == [f"[{cp.sshd.ip}]:{cp.sshd.port}", "ssh-ed25519", pub]
    second = run(fc, ONE_CP, clients, tmp_path)
    assert second.valid and second.notices == []


def test_changed_control_plane_host_key_is_refused(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                   tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    assert run(fc, ONE_CP, clients, tmp_path).valid
    cp = fc.control_planes[0]
    cp.sshd.stop()
    cp.sshd.new_host_key()
    cp.sshd.start()
    known = tmp_path / "known_hosts" / CLUSTER
    before = known.read_text()
    with pytest.raises(HostKeyChanged) as err:
        run(fc, ONE_CP, clients, tmp_path)
    msg = str(err.value)
    assert "has CHANGED" in msg and "instance was replaced" in msg
    assert f"ssh-keygen -R '[{cp.sshd.ip}]:{cp.sshd.port}' -f {known}" in msg
    assert known.read_text() == before  # never overwritten silently


def test_key_of_another_type_than_recorded_is_refused(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                     tmp_path: Path) -> None:
    import subprocess

    fc = fake_cluster(ONE_CP)
    cp = fc.control_planes[0]
    rsa = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True)
    known = tmp_path / "known_hosts" / CLUSTER
    known.parent.mkdir(parents=True)
    known.write_text(f"[{cp.sshd.ip}]:{cp.sshd.port} ssh-rsa {rsa.with_suffix('.pub').read_text().split()[1]}\n")
    with pytest.raises(HostKeyChanged, match="has CHANGED"):
        run(fc, ONE_CP, clients, tmp_path)  # the sshd only has an ed25519 key
    assert len(known.read_text().splitlines()) == 1


def test_changed_node_host_key_is_refused_in_its_failure(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                         tmp_path: Path) -> None:
    fc = fake_cluster(ONE_CP)
    node = fc.nodes[0]
    fc.set_state(node.instance_id, "bootfail")
    run(fc, ONE_CP, clients, tmp_path)  # records the node's key while diagnosing it
    node.sshd.stop()
    node.sshd.new_host_key()
    node.sshd.start()
    result = run(fc, ONE_CP, clients, tmp_path)
    assert [f.name for f in result.failures] == [node.instance_id]
    assert "has CHANGED" in result.failures[0].message


def test_proxy_jump_from_ssh_config(fake_cluster: Callable[..., FakeCluster], clients: Any, tmp_path: Path,
                                    ssh_keypair: tuple[Path, Path]) -> None:
    fc = fake_cluster(ONE_CP)
    jump = SshdDouble(tmp_path / "jump", fc.workdir / "authorized_keys")
    jump.start()
    try:
        user = getpass.getuser()
        cp = fc.control_planes[0]
        fc.write_ssh_config(
            f"Host jumphost\n  HostName {jump.ip}\n  Port {jump.port}\n  User {user}\n  IdentityFile {ssh_keypair[0]}\n\n"
            f"Host {cp.public_ip}\n  ProxyJump jumphost\n\n")
        result = run(fc, ONE_CP, clients, tmp_path)
        assert result.valid, result.failures
        assert result.ssh_connections == 2  # the jump host and the control plane behind it
        assert any(f"[{jump.ip}]:{jump.port}" in n for n in result.notices)
        jump.stop()
        result = run(fc, ONE_CP, clients, tmp_path)
        assert [f.type for f in result.failures] == ["ControlPlane"]
        assert "connection refused" in result.failures[0].message
    finally:
        jump.stop()


def test_bastion_reaches_instances_by_private_address(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                                      tmp_path: Path, ssh_keypair: tuple[Path, Path]) -> None:
    fc = fake_cluster(ONE_CP)
    broken = fc.nodes[0]
    fc.set_state(broken.instance_id, "bootfail")
    jump = SshdDouble(tmp_path / "bastion", fc.workdir / "authorized_keys")
    jump.start()
    try:
        # Only private addresses are mapped: the public ones must not be used at all.
        fc.write_ssh_config(f"Host bastion.example.com\n  HostName {jump.ip}\n  Port {jump.port}\n"
                           f"  User {getpass.getuser()}\n  IdentityFile {ssh_keypair[0]}\n\n")
        text = fc.ssh_config.read_text()
        for h in fc.hosts:
            text = text.replace(f"Host {h.public_ip} ", "Host ")
        fc.ssh_config.write_text(text)
        result = run(fc, ONE_CP, clients, tmp_path, bastion="bastion.example.com")
        assert [(f.type, f.name) for f in result.failures] == [("Machine", broken.instance_id)]
        assert "kubeadm-join" in result.failures[0].message
        assert result.ssh_connections == 3  # bastion once, control plane, broken node
    finally:
        jump.stop()


def test_stuck_hosts_are_bounded_by_timeouts(fake_cluster: Callable[..., FakeCluster], clients: Any,
                                             tmp_path: Path) -> None:
    """A node whose command hangs and a node that never says hello each cost about one timeout."""
    import socket
    import threading
    import time

    from validate_doubles import CMD_BOOTSTRAP, host_answers, loopback_address

    fc = fake_cluster(ONE_CP)
    hung, silent = fc.nodes
    fc.set_state(hung.instance_id, "bootfail")
    fc.set_state(silent.instance_id, "bootfail")
    answers = host_answers(hung)
    answers[CMD_BOOTSTRAP]["sleep"] = 3
    hung.sshd.set_answers(answers)
    ip, port = loopback_address()
    listener = socket.socket()
    listener.bind((ip, port))
    listener.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    fc.ssh_config.write_text(fc.ssh_config.read_text().replace(
        f"HostName {silent.sshd.ip}\n  Port {silent.sshd.port}", f"HostName {ip}\n  Port {port}"))
    try:
        start = time.monotonic()
        result = validate_cluster(CLUSTER, groups_of(ONE_CP), clients, SSHConnector(SSHSettings(
            known_hosts=tmp_path / "kh", config_path=fc.ssh_config, connect_timeout=1, command_timeout=1)))
        elapsed = time.monotonic() - start
    finally:
        listener.close()
        for conn in held:
            conn.close()
    by_name = {f.name: f.message for f in result.failures}
    assert "could not read /var/lib/kopsy/bootstrap.json: did not finish within 1s" in by_name[hung.instance_id]
    assert "cloud-init error" in by_name[hung.instance_id]  # the other commands still answered
    assert "SSH handshake timed out after 1s" in by_name[silent.instance_id]
    # The messages above prove which timeout fired; this is only a sanity bound (shared, loaded CI cores).
    assert elapsed < 10, elapsed


def test_proxy_command_from_ssh_config(fake_cluster: Callable[..., FakeCluster], clients: Any, tmp_path: Path) -> None:
    import sys

    relay = Path(__file__).with_name("tcp_relay.py")
    fc = fake_cluster(ONE_CP)
    cp = fc.control_planes[0]
    fc.write_ssh_config(f"Host {cp.public_ip}\n  ProxyCommand {sys.executable} -I {relay} %h %p\n\n")
    result = run(fc, ONE_CP, clients, tmp_path)
    assert result.valid, result.failures
    assert result.ssh_connections == 1
    cp.sshd.stop()
    result = run(fc, ONE_CP, clients, tmp_path)
    assert [f.type for f in result.failures] == ["ControlPlane"]
    msg = result.failures[0].message
    assert "cannot be reached over SSH" in msg and "ProxyCommand" in msg and "exited with status 1" in msg
    assert "ConnectionRefusedError" in msg  # the proxy's own last error line

"""The node supervisor and node shell: instances launched with boto3 get an sshd whose answers
follow the readiness rules; each fault the sandbox issue names shows up with its reason."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import paramiko
import pytest
from sandbox_helpers import Sandbox, describe, procs_alive, ready_of, ssh_run, wait_for

from kopsy.sandbox import fabricate
from kopsy.sandbox.fabricate import FabricatedCluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a real `kopsy sandbox up` (moto server and sshds)

NODES = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json"
PODS = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -n kube-system -o json"
STATUS = "sudo cat /var/lib/kopsy/bootstrap.json"
CLOUD_INIT = "cloud-init status --long"
LOG = "sudo tail -n 20 /var/log/kopsy-bootstrap.log"


class Cluster:
    """A fabricated cluster in the sandbox, and SSH into its instances through the ssh config."""

    count = 0

    def __init__(self, sb: Sandbox, key: tuple[Path, str], name: str, nodes: int = 2) -> None:
        self.sb = sb
        self.key = key[0]
        self.clients = sb.clients()
        Cluster.count += 1  # each cluster its own VPC range: private addresses repeat across VPCs
        self.fc: FabricatedCluster = fabricate.fabricate_cluster(
            self.clients, name=name, bucket=sb.info.bucket, public_key=key[1], network_cidr=f"10.{Cluster.count}.0.0/16"
        )
        self.cp = fabricate.launch(self.clients, self.fc, "ControlPlane")[0]
        self.nodes = fabricate.launch(self.clients, self.fc, "Node", nodes) if nodes else []
        self.wait_serving(self.cp, *self.nodes)

    def wait_serving(self, *ids: str) -> None:
        wait_for(f"sshds of {ids}", lambda: self.sb.serving(*ids))

    def info(self, iid: str) -> dict[str, Any]:
        return describe(self.clients, [iid])[iid]

    def run(self, iid: str, command: str, via: str = "PrivateIpAddress") -> tuple[str, str, int]:
        return ssh_run(self.sb.layout.ssh_config, self.info(iid)[via], command, self.key)

    def node_list(self) -> dict[str, Any]:
        out, err, rc = self.run(self.cp, NODES)
        assert rc == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    def readiness(self) -> dict[str, tuple[str, str, str]]:
        return ready_of(self.node_list())

    def name(self, iid: str) -> str:
        return str(self.info(iid)["PrivateDnsName"])

    def bootstrap(self, iid: str) -> dict[str, Any]:
        out, err, rc = self.run(iid, STATUS)
        assert rc == 0, err
        return json.loads(out)  # type: ignore[no-any-return]


def test_healthy_cluster_answers_in_real_formats(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    c = Cluster(sandbox, admin_key, "healthy.example.com")
    nl = c.node_list()
    assert nl["apiVersion"] == "v1" and nl["kind"] == "List"
    by_name = {n["metadata"]["name"]: n for n in nl["items"]}
    assert set(by_name) == {c.name(i) for i in [c.cp, *c.nodes]}
    cp = by_name[c.name(c.cp)]
    assert cp["kind"] == "Node"
    assert "node-role.kubernetes.io/control-plane" in cp["metadata"]["labels"]
    zone = c.info(c.cp)["Placement"]["AvailabilityZone"]
    assert cp["spec"]["providerID"] == f"aws:///{zone}/{c.cp}"
    assert all(s == "True" for s, _, _ in ready_of(nl).values())

    out, err, rc = c.run(c.cp, PODS)
    assert rc == 0, err
    pods = json.loads(out)["items"]
    names = {p["metadata"]["name"] for p in pods}
    for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        assert f"{comp}-{c.name(c.cp)}" in names
    assert all(p["status"]["phase"] == "Running" for p in pods)
    critical = {p["spec"]["priorityClassName"] for p in pods}
    assert critical == {"system-cluster-critical", "system-node-critical"}
    assert any(n.startswith("coredns-") for n in names) and any(n.startswith("kube-proxy-") for n in names)

    # each stand-in has its own host key and its own loopback address
    keys = {(sandbox.layout.node_dir(i) / "ssh_host_ed25519_key").read_bytes() for i in [c.cp, *c.nodes]}
    assert len(keys) == 1 + len(c.nodes)
    assert len({sandbox.nodes()[i]["address"] for i in [c.cp, *c.nodes]}) == 1 + len(c.nodes)
    # every address of an instance reaches the same stand-in; the node diagnostics answer
    node = c.nodes[0]
    for via in ("PublicIpAddress", "PrivateIpAddress", "PrivateDnsName"):
        assert c.run(node, "cloud-init status", via)[0] == "status: done\n"
    assert c.bootstrap(node)["phase"] == "done" and c.bootstrap(node)["error"] is None
    out, _, rc = c.run(node, CLOUD_INIT)
    assert rc == 0 and "status: done" in out and "errors: []" in out
    out, _, rc = c.run(node, LOG)
    assert rc == 0 and "[done]" in out.splitlines()[-1]
    # a worker has no admin.conf, as on a real node
    _, err, rc = c.run(node, NODES)
    assert rc == 1 and "admin.conf: no such file" in err
    # anything else: a clear message and 127
    _, err, rc = c.run(node, "rm -rf /")
    assert rc == 127 and "LOCAL EMULATION" in err and "command not found" in err


def test_terminated_instance_loses_its_sshd_and_ssh_config_entry(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    c = Cluster(sandbox, admin_key, "shrink.example.com", nodes=1)
    node = c.nodes[0]
    pid = sandbox.nodes()[node]["pid"]
    ip = c.info(node)["PrivateIpAddress"]
    assert ip in sandbox.layout.ssh_config.read_text()
    c.clients.client("ec2").terminate_instances(InstanceIds=[node])
    wait_for("the node's sshd to go", lambda: node not in sandbox.nodes())
    assert not procs_alive(pid)
    assert ip not in sandbox.layout.ssh_config.read_text()
    assert c.name(node) not in c.readiness()


def test_node_with_stopped_sshd_is_unknown_until_started_again(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    c = Cluster(sandbox, admin_key, "sshd-down.example.com", nodes=2)
    victim = c.nodes[0]
    os.kill(sandbox.nodes()[victim]["pid"], signal.SIGKILL)  # the machine dies
    wait_for("the node to count as down", lambda: sandbox.nodes()[victim]["state"] == "down")
    status, reason, message = c.readiness()[c.name(victim)]
    assert (status, reason) == ("Unknown", "NodeStatusUnknown") and "stopped posting" in message
    assert c.readiness()[c.name(c.nodes[1])][0] == "True"
    with pytest.raises((OSError, paramiko.SSHException)):  # nobody answers at its address any more
        c.run(victim, STATUS)
    r = sandbox.kopsy("sandbox", "start-node", "--dir", str(sandbox.dir), victim)
    assert r.returncode == 0, r.stderr
    assert c.readiness()[c.name(victim)][0] == "True"
    r = sandbox.kopsy("sandbox", "stop-node", "--dir", str(sandbox.dir), victim)
    assert r.returncode == 0 and sandbox.nodes()[victim]["state"] == "down"


def test_user_data_with_wrong_endpoint_never_joins(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    c = Cluster(sandbox, admin_key, "wrong-endpoint.example.com", nodes=1)
    bad = fabricate.launch(c.clients, c.fc, "Node", data=fabricate.user_data(c.fc, "Node", api_endpoint="wrong.example.com:443"))[0]
    c.wait_serving(bad)
    ready = c.readiness()
    assert c.name(bad) not in ready and ready[c.name(c.nodes[0])][0] == "True"
    status = c.bootstrap(bad)
    assert status["phase"] == "wait-for-api"
    assert status["error"].startswith("cannot reach API endpoint wrong.example.com:443")
    out, _, rc = c.run(bad, CLOUD_INIT)
    assert rc == 1 and "status: error" in out and "scripts_user" in out
    out, _, rc = c.run(bad, LOG)
    assert rc == 0 and "FAILED: cannot reach API endpoint wrong.example.com:443" in out.splitlines()[-1]


def test_removed_security_group_rules_show_with_reason(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    c = Cluster(sandbox, admin_key, "sg-rule.example.com", nodes=2)
    ec2 = c.clients.client("ec2")
    sgs = c.fc.security_groups
    # control plane -> kubelet: the nodes join but are NotReady, saying why
    ec2.revoke_security_group_ingress(GroupId=sgs["nodes"], IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sgs["control-plane"]}]}])
    ready = wait_for("NotReady nodes", lambda: {n: r for n, r in c.readiness().items() if r[0] == "False"})
    assert set(ready) == {c.name(n) for n in c.nodes}
    assert all("10250" in msg and reason == "KubeletNotReady" for _, reason, msg in ready.values())
    # nodes -> API server: the nodes cannot join at all
    ec2.revoke_security_group_ingress(GroupId=sgs["control-plane"], IpPermissions=[{"IpProtocol": "tcp", "FromPort": 2382, "ToPort": 65535, "UserIdGroupPairs": [{"GroupId": sgs["nodes"]}]}])
    wait_for("nodes to drop out", lambda: set(c.readiness()) == {c.name(c.cp)})
    status = c.bootstrap(c.nodes[0])
    assert status["phase"] == "wait-for-api" and "6443" in status["error"]


def test_unusable_user_data_fails_cloud_init(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    c = Cluster(sandbox, admin_key, "garbage.example.com", nodes=0)
    bad = fabricate.launch(c.clients, c.fc, "Node", data=b"#cloud-config\nwrite_files: [unclosed\n")[0]
    c.wait_serving(bad)
    out, _, rc = c.run(bad, CLOUD_INIT)
    assert rc == 1 and "status: error" in out and "not valid cloud-init" in out
    _, err, rc = c.run(bad, STATUS)
    assert rc == 1 and "No such file" in err  # the boot script never ran


def test_ca_hash_mismatch_is_a_join_failure(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    c = Cluster(sandbox, admin_key, "ca.example.com", nodes=0)
    from dataclasses import replace

    other = replace(c.fc, ca_hash="sha256:" + "0" * 64)
    bad = fabricate.launch(c.clients, c.fc, "Node", data=fabricate.user_data(other, "Node"))[0]
    c.wait_serving(bad)
    status = c.bootstrap(bad)
    assert status["phase"] == "kubeadm-join" and "sha256:" + "0" * 64 in status["error"]
    assert c.name(bad) not in c.readiness()


def test_every_listening_socket_of_the_sandbox_is_on_loopback(sandbox: Sandbox, admin_key: tuple[Path, str]) -> None:
    """Issue 6: up binds 127.0.0.1 / 127.x.y.z only. Checked with ``ss`` over every listening
    TCP, UDP and raw socket of every process the sandbox runs (moto, supervisor, sshds and
    their children), not just the ones we expect."""
    import re
    import subprocess

    from kopsy.sandbox import procs

    c = Cluster(sandbox, admin_key, "listen.example.com", nodes=1)
    ours = {sandbox.info.moto_pid, sandbox.info.supervisor_pid, *procs.descendants(sandbox.info.moto_pid, sandbox.info.supervisor_pid)}
    ss = subprocess.run(["ss", "-H", "-l", "-n", "-p", "-t", "-u", "-w"], capture_output=True, text=True, check=True, timeout=30)
    listening: dict[str, set[int]] = {}
    for line in ss.stdout.splitlines():
        pids = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if pids & ours:
            local = line.split()[4]
            listening[local] = pids & ours
    assert listening, ss.stdout
    elsewhere = [a for a in listening if not a.rsplit(":", 1)[0].startswith("127.")]
    assert elsewhere == [], f"sandbox processes listen beyond loopback: {elsewhere}"
    # and the ones we expect are among them: moto, and each node's sshd on its own 127.x address
    assert sandbox.info.endpoint.removeprefix("http://") in listening
    nodes = sandbox.nodes()
    for iid in (c.cp, *c.nodes):
        n = nodes[iid]
        assert not n["address"].startswith("127.0.0.")
        assert listening.get(f"{n['address']}:{n['port']}") == {n["pid"]}

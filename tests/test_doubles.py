"""The shared test doubles (tests/doubles/) behave like what they stand in for: the kubectl
answers parse with kopsy's own parsers into what went in, and the sshd double serves exec
requests from its answers file, over real SSH, on loopback only."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kopsy.validate.facts import parse_node_list, parse_pod_list
from tests.doubles.kubectl import KubeNode, node_list, pod_list
from tests.tools import require_tool

NODES = [
    KubeNode("ip-10-0-0-10.ec2.internal", "i-cp", "us-east-1a", "10.0.0.10", control_plane=True),
    KubeNode("ip-10-0-0-20.ec2.internal", "i-n1", "us-east-1b", "10.0.0.20", ready="False"),
    KubeNode("ip-10-0-0-30.ec2.internal", "i-n2", "us-east-1a", "10.0.0.30", ready="Unknown"),
]


def test_node_list_is_what_kubectl_prints_and_parses_back() -> None:
    doc = json.loads(node_list(NODES))
    assert (doc["apiVersion"], doc["kind"]) == ("v1", "List")  # kubectl says List, not NodeList
    parsed = parse_node_list(node_list(NODES))
    assert [(n.name, n.instance_id, n.control_plane, n.ready, n.reason) for n in parsed] == [
        ("ip-10-0-0-10.ec2.internal", "i-cp", True, True, "KubeletReady"),
        ("ip-10-0-0-20.ec2.internal", "i-n1", False, False, "KubeletNotReady"),
        ("ip-10-0-0-30.ec2.internal", "i-n2", False, False, "NodeStatusUnknown"),
    ]


def test_pod_list_has_the_control_plane_the_daemons_and_coredns() -> None:
    assert json.loads(pod_list(NODES))["kind"] == "List"
    pods = parse_pod_list(pod_list(NODES))
    on_cp = {p.name for p in pods if p.node_name == NODES[0].name}
    assert {f"{c}-{NODES[0].name}" for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")} <= on_cp
    assert {p.component for p in pods if p.node_name == NODES[0].name and p.component} >= {"kube-apiserver", "etcd"}
    assert sum(p.name.startswith("kube-proxy-") for p in pods) == len(NODES)
    assert sum(p.name.startswith("coredns-") for p in pods) == 2
    assert all(p.phase == "Running" and p.ready for p in pods)
    assert pod_list([]) == json.dumps({"apiVersion": "v1", "items": [], "kind": "List", "metadata": {"resourceVersion": ""}})


def test_the_sshd_double_answers_exec_requests_on_loopback(tmp_path: Path, ssh_keypair: tuple[Path, Path]) -> None:
    import ipaddress

    import paramiko

    from tests.doubles.sshd import SshdDouble

    require_tool("sshd")
    priv, pub = ssh_keypair
    double = SshdDouble(tmp_path / "host", pub)
    double.set_answers({"hello": {"stdout": "hi\n"}, "broken": {"stderr": "no\n", "exit": 3}})
    assert ipaddress.ip_address(double.ip).is_loopback
    double.start()
    try:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        host_key = double.host_key.with_suffix(".pub").read_text().split()
        client.get_host_keys().add(f"[{double.ip}]:{double.port}", host_key[0], paramiko.Ed25519Key(data=base64.b64decode(host_key[1])))
        client.connect(double.ip, double.port, username="root", key_filename=str(priv), allow_agent=False, look_for_keys=False, timeout=10)

        def run(command: str) -> tuple[str, str, int]:
            _, out, err = client.exec_command(command, timeout=10)
            return out.read().decode(), err.read().decode(), out.channel.recv_exit_status()

        assert run("hello") == ("hi\n", "", 0)
        assert run("broken") == ("", "no\n", 3)
        out, err, code = run("uname -a")
        assert code == 127 and "command not found" in err
        client.close()
    finally:
        double.stop()
    assert not double.running


@pytest.mark.parametrize("module", ["sshd", "kubectl", "answers"])
def test_each_double_says_what_it_stands_in_for(module: str) -> None:
    import ast

    source = Path(__file__).parent / "doubles" / f"{module}.py"
    assert (ast.get_docstring(ast.parse(source.read_text())) or "").startswith("TEST DOUBLE:")

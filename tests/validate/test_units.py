"""Pure parts of validate: ssh-config resolution and precedence, parsers, checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kopsy.cloud.aws.groups import InstanceFacts
from kopsy.remote import SSHConnector, SSHSettings, parse_hop
from kopsy.spec.model import Cluster, Subnet
from kopsy.validate import checks
from kopsy.validate.facts import (
    FactError,
    NodeFacts,
    PodFacts,
    instance_id_from_provider_id,
    parse_cloud_init_status,
    parse_node_list,
    parse_pod_list,
)


def connector(tmp_path: Path, config: str, **kw: object) -> SSHConnector:
    cfg = tmp_path / "ssh_config"
    cfg.write_text(config)
    return SSHConnector(SSHSettings(known_hosts=tmp_path / "kh", config_path=cfg, **kw))  # type: ignore[arg-type]


CONFIG = """
Host 54.1.2.3 10.0.0.5
  HostName 127.9.9.9
  Port 2222
  User admin
  IdentityFile ~/keys/from-config
  ProxyJump jump@gw:2200

Host elsewhere
  ProxyCommand nc %h %p

Host aliased
  HostName 127.9.9.8
  Port 2200
  HostKeyAlias cp-1.demo
"""


def test_config_user_beats_default_and_flag_beats_config(tmp_path: Path) -> None:
    ep = connector(tmp_path, CONFIG).resolve("54.1.2.3")
    assert (ep.hostname, ep.port, ep.user) == ("127.9.9.9", 2222, "admin")
    assert ep.proxy_jump == "jump@gw:2200"
    assert ep.known_hosts_name == "[127.9.9.9]:2222"
    assert connector(tmp_path, CONFIG, user="ops").resolve("54.1.2.3").user == "ops"
    assert connector(tmp_path, CONFIG).resolve("203.0.113.1").user == "ubuntu"
    plain = connector(tmp_path, CONFIG).resolve("other")
    assert (plain.hostname, plain.port, plain.known_hosts_name) == ("other", 22, "other")
    assert connector(tmp_path, CONFIG).resolve("elsewhere").proxy_command == "nc elsewhere 22"
    assert connector(tmp_path, CONFIG).resolve("aliased").known_hosts_name == "cp-1.demo"
    # jump hosts: the config's User beats --ssh-user (which names the destination's user), a hop's own user wins
    assert connector(tmp_path, CONFIG, user="ops").resolve("54.1.2.3", hop=True).user == "admin"
    assert connector(tmp_path, CONFIG, user="ops").resolve("other", hop=True).user == "ops"
    assert connector(tmp_path, CONFIG, user="ops").resolve("54.1.2.3", user="jump", hop=True).user == "jump"


def test_key_precedence(tmp_path: Path) -> None:
    cluster_key, default_key = tmp_path / "cluster", tmp_path / "id_ed25519"
    c = connector(tmp_path, CONFIG, fallback_keys=(cluster_key, default_key))
    assert c.resolve("54.1.2.3").key_files == (Path("~/keys/from-config").expanduser(), cluster_key, default_key)
    assert c.resolve("other").key_files == (cluster_key, default_key)
    flag = tmp_path / "flag"
    c = connector(tmp_path, CONFIG, key_path=flag, fallback_keys=(cluster_key,))
    assert c.resolve("54.1.2.3").key_files == (flag,)


def test_cli_settings_find_the_key_beside_the_create_time_public_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    from kopsy.cli.validate import ssh_settings

    monkeypatch.setenv("HOME", str(tmp_path))
    cluster = Cluster(name="demo.example.com", kubernetes_version="1.33.2",
                      subnets=[Subnet("us-east-1a", "us-east-1a", "172.20.32.0/19")],
                      annotations={"kopsy.io/ssh-public-key-path": "/keys/admin.pub"})
    s = ssh_settings(cluster, ssh_user=None, ssh_key=None, ssh_config=None, bastion=None,
                     connect_timeout=10, command_timeout=30)
    assert s.fallback_keys == (Path("/keys/admin"), tmp_path / ".ssh/id_ed25519", tmp_path / ".ssh/id_rsa")
    assert s.known_hosts == tmp_path / ".kopsy/known_hosts/demo.example.com"
    assert s.config_path is None  # no ~/.ssh/config here


@pytest.mark.parametrize("hop,expected", [
    ("gw", ("gw", None, None)), ("me@gw:2200", ("gw", "me", 2200)), ("[::1]:22", ("::1", None, 22)),
])
def test_parse_hop(hop: str, expected: tuple[str, str | None, int | None]) -> None:
    assert parse_hop(hop) == expected


def test_bad_jump_host_is_a_clear_error() -> None:
    from kopsy.errors import SSHError

    with pytest.raises(SSHError, match="not \\[USER@\\]HOST\\[:PORT\\]"):
        parse_hop("admin@bastion:ssh")


def test_cloud_init_status_formats() -> None:
    old = ("status: error\ntime: Sun, 22 Nov 2026 00:10:01 +0000\ndetail:\n"
           "('scripts_user', RuntimeError('Runparts: 1 failures'))\n")
    assert parse_cloud_init_status(old) == ("error", "('scripts_user', RuntimeError('Runparts: 1 failures'))")
    new = ("status: error\nextended_status: error - done\nboot_status_code: enabled-by-generator\n"
           "last_update: Thu, 01 Jan 1970 00:02:47 +0000\ndetail:\nDataSourceEc2Local\n"
           "errors:\n\t- ('scripts_user', RuntimeError('Runparts: 1 failures'))\nrecoverable_errors: {}\n")
    status, detail = parse_cloud_init_status(new)
    assert (status, detail) == ("error", "('scripts_user', RuntimeError('Runparts: 1 failures'))")
    done = "status: done\ndetail:\nDataSourceEc2Local\nerrors: []\n"
    assert parse_cloud_init_status(done) == ("done", "DataSourceEc2Local")
    assert parse_cloud_init_status("status: running\n") == ("running", "")


def test_provider_id() -> None:
    assert instance_id_from_provider_id("aws:///us-east-1a/i-0abc") == "i-0abc"
    assert instance_id_from_provider_id("gce://p/z/n") == ""


def test_bad_kubectl_output_is_a_fact_error() -> None:
    with pytest.raises(FactError, match="did not return JSON"):
        parse_node_list("error: You must be logged in to the server (Unauthorized)")
    with pytest.raises(FactError, match="no pods list"):
        parse_pod_list(json.dumps({"kind": "Status"}))


def _inst(iid: str, dns: str, role: str = "Node") -> InstanceFacts:
    return InstanceFacts(iid, "nodes", role, "running", "10.0.0.1", dns, "", "us-east-1a")


def test_nodes_match_by_provider_id_or_dns_name() -> None:
    a, b, c = _inst("i-a", "ip-a"), _inst("i-b", "ip-b"), _inst("i-c", "ip-c")
    nodes = [NodeFacts("custom-name", "i-a", False, True), NodeFacts("ip-b", "", False, False, "KubeletNotReady")]
    found = checks.check_nodes([a, b, c], nodes, [])
    assert [(f.type, f.name) for f in found.failures] == [("Node", "ip-b"), ("Machine", "i-c")]
    assert [i.id for i in found.broken] == ["i-b", "i-c"]
    assert [(n.name, n.ready) for n in found.nodes] == [("custom-name", True), ("ip-b", False), ("ip-c", False)]


def test_control_plane_components_and_critical_pods() -> None:
    cp = _inst("i-cp", "ip-cp", "ControlPlane")
    node = NodeFacts("ip-cp", "i-cp", True, True)
    pods = [PodFacts(f"{c}-ip-cp", "ip-cp", "system-node-critical", "Running", True)
            for c in ("kube-apiserver", "kube-controller-manager", "etcd")]
    pods.append(PodFacts("coredns-1", "", "system-cluster-critical", "Pending", False, reason="Unschedulable"))
    pods.append(PodFacts("my-app", "ip-cp", "", "Pending", False))
    found = checks.check_nodes([cp], [node], pods)
    assert [(f.type, f.name) for f in found.failures] == [("ControlPlane", "ip-cp"), ("Pod", "kube-system/coredns-1")]
    assert "not running kube-scheduler" in found.failures[0].message
    assert "is Pending (Unschedulable)" in found.failures[1].message and "not scheduled" in found.failures[1].message


def test_known_hosts_file_is_private(tmp_path: Path) -> None:
    import paramiko

    from kopsy.remote import KnownHosts

    kh = KnownHosts(tmp_path / "dir" / "kh")
    key = paramiko.Ed25519Key.from_private_key_file(str(_keyfile(tmp_path)))
    kh.record("[127.0.0.9]:22", key)
    kh.record("[127.0.0.9]:22", key)
    assert (tmp_path / "dir" / "kh").stat().st_mode & 0o777 == 0o600
    assert len((tmp_path / "dir" / "kh").read_text().splitlines()) == 1
    assert len(kh.drain_notices()) == 1 and kh.drain_notices() == []


def _keyfile(tmp_path: Path) -> Path:
    import subprocess

    path = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


def test_the_loopback_guard_catches_unmapped_addresses(tmp_path: Path) -> None:
    """The autouse guard in conftest.py: an unmapped moto address must never be dialled."""
    c = connector(tmp_path, CONFIG, key_path=tmp_path / "none")
    with pytest.raises(AssertionError, match="non-loopback 198.51.100.7"):
        c.connect("198.51.100.7")


def _results(*valid: bool) -> list[object]:
    from kopsy.validate.result import Failure, ValidationResult

    return [ValidationResult("c", [] if ok else [Failure("Node", "n", "not Ready")]) for ok in valid]


def test_wait_needs_consecutive_successes(capsys: pytest.CaptureFixture[str]) -> None:
    from kopsy.cli.validate import _poll

    answers = iter(_results(False, True, False, True, True, False))
    result = _poll(lambda: next(answers), wait=30, interval=0.001, count=2)  # type: ignore[arg-type, return-value]
    assert result.valid and next(answers).valid is False  # stopped right after the 2nd success in a row
    progress = capsys.readouterr().err.splitlines()
    assert len(progress) == 4 and "attempt 4: cluster c is ready (1/2 consecutive successes)" in progress[3]


def test_wait_returns_the_last_result_at_the_deadline_and_survives_errors() -> None:
    from kopsy.cli.validate import _poll
    from kopsy.errors import CloudError, HostKeyChanged

    calls = []

    def flaky() -> object:
        calls.append(1)
        if len(calls) == 1:
            raise CloudError("throttled")
        return _results(False)[0]

    result = _poll(flaky, wait=0.05, interval=0.01, count=1)  # type: ignore[arg-type]
    assert not result.valid and len(calls) >= 2

    def refused() -> object:
        raise HostKeyChanged("REFUSED")

    with pytest.raises(HostKeyChanged):
        _poll(refused, wait=30, interval=0.01, count=1)  # type: ignore[arg-type]

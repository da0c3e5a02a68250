"""TEST DOUBLES for validate: real OpenSSH sshd processes on loopback answering like cluster instances.

- ``SshdDouble`` (from ``tests/doubles/sshd.py``): one real sshd on its own 127.x.y.z address
  and port, answering from a JSON file; the kubectl answers come from ``tests/doubles/kubectl.py``.
- ``FakeCluster``: ASGs + launch templates with kopsy's names and tags (docs/update.md) launched in moto (so the
  instances are real moto instances), one ``SshdDouble`` per instance, an OpenSSH config that
  maps each instance's public IP, private IP and private DNS name to its sshd (docs/sandbox.md, "SSH config"),
  and per-instance answers derived from a per-instance state:
  ``ready`` | ``notready`` (joined, kubelet NotReady) | ``bootfail`` (never joined; bootstrap
  failed in kubeadm-join) | ``down`` (sshd stopped).

Plus helpers for clusters made by the real ``kopsy update`` in the sandbox: instances by tag and
the wrong-endpoint fault.

Only 127.0.0.0/8 is ever used: moto's public-looking addresses appear solely as ``Host`` names.
Also used by ``bench/validate.py``.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.doubles import kubectl
from tests.doubles.kubectl import KubeNode
from tests.doubles.sshd import SshdDouble, loopback_address  # noqa: F401  (also imported from here by tests and bench)

KUBECTL = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf"
CMD_NODES = f"{KUBECTL} get nodes -o json"
CMD_PODS = f"{KUBECTL} get pods -n kube-system -o json"
CMD_BOOTSTRAP = "sudo cat /var/lib/kopsy/bootstrap.json"
CMD_CLOUD_INIT = "cloud-init status --long"
CMD_LOG = "sudo tail -n 20 /var/log/kopsy-bootstrap.log"


# --- a whole cluster -----------------------------------------------------------------------------


@dataclass
class FakeHost:
    instance_id: str
    instance_group: str
    role: str
    zone: str
    private_ip: str
    private_dns: str
    public_ip: str
    sshd: SshdDouble
    state: str = "ready"

    @property
    def control_plane(self) -> bool:
        return self.role == "ControlPlane"


TAGS = ("kopsy.io/cluster", "kopsy.io/instancegroup", "kopsy.io/role")


def launch_groups(ec2: Any, autoscaling: Any, cluster: str, groups: list[tuple[str, str, int]]) -> None:
    """docs/update.md's names in moto: per group a launch template and an ASG named ``<ig>.<cluster>``, tagged."""
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    for ig, role, count in groups:
        name = f"{ig}.{cluster}"
        ec2.create_launch_template(LaunchTemplateName=name,
                                   LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.medium"})
        tags = {"kopsy.io/cluster": cluster, "kopsy.io/instancegroup": ig, "kopsy.io/role": role,
                f"kubernetes.io/cluster/{cluster}": "owned", "KubernetesCluster": cluster, "Name": name}
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": name},
            MinSize=count, MaxSize=count, DesiredCapacity=count, AvailabilityZones=["us-east-1a"],
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()],
        )


@dataclass
class FakeCluster:
    """Moto instances + one sshd double each + the ssh config mapping them; ``publish()`` writes answers."""

    name: str
    workdir: Path
    user: str
    private_key: Path
    public_key: Path
    hosts: list[FakeHost] = field(default_factory=list)

    @classmethod
    def launch(cls, name: str, workdir: Path, ec2: Any, autoscaling: Any, groups: list[tuple[str, str, int]],
               user: str, private_key: Path, public_key: Path) -> FakeCluster:
        launch_groups(ec2, autoscaling, name, groups)
        fc = cls(name, workdir, user, private_key, public_key)
        authorized = workdir / "authorized_keys"
        authorized.write_text(public_key.read_text())
        pages = ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [name]}])
        raws = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        raws.sort(key=lambda i: i["InstanceId"])
        for raw in raws:
            tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
            iid = raw["InstanceId"]
            fc.hosts.append(FakeHost(
                iid, tags["kopsy.io/instancegroup"], tags["kopsy.io/role"],
                raw["Placement"]["AvailabilityZone"], raw["PrivateIpAddress"], raw["PrivateDnsName"],
                raw.get("PublicIpAddress", ""), SshdDouble(workdir / iid, authorized)))
        fc.hosts.sort(key=lambda h: (not h.control_plane, h.instance_id))
        fc.publish()
        for h in fc.hosts:
            h.sshd.start()
        fc.write_ssh_config()
        return fc

    @property
    def ssh_config(self) -> Path:
        return self.workdir / "ssh_config"

    def host(self, instance_id: str) -> FakeHost:
        return next(h for h in self.hosts if h.instance_id == instance_id)

    @property
    def control_planes(self) -> list[FakeHost]:
        return [h for h in self.hosts if h.control_plane]

    @property
    def nodes(self) -> list[FakeHost]:
        return [h for h in self.hosts if not h.control_plane]

    def write_ssh_config(self, extra: str = "", identity: bool = True) -> None:
        """As docs/sandbox.md ("SSH config") has it: public IP, private IP and private DNS name each map to the instance's sshd.

        ``identity=False`` leaves IdentityFile out, so kopsy must find the key itself (docs/validate.md, "SSH")."""
        lines = []
        for h in self.hosts:
            names = " ".join(n for n in (h.public_ip, h.private_ip, h.private_dns) if n)
            lines += [f"Host {names}", f"  HostName {h.sshd.ip}", f"  Port {h.sshd.port}", f"  User {self.user}"]
            lines += [f"  IdentityFile {self.private_key}", ""] if identity else [""]
        self.ssh_config.write_text(extra + "\n".join(lines))

    def set_state(self, instance_id: str, state: str) -> None:
        h = self.host(instance_id)
        h.state = state
        if state == "down":
            h.sshd.stop()
        elif not h.sshd.running:
            h.sshd.start()
        self.publish()

    def stop(self) -> None:
        for h in self.hosts:
            h.sshd.stop()

    # --- answers ---

    def publish(self) -> None:
        nodes = node_list(self.hosts)
        pods = pod_list(self.hosts)
        for h in self.hosts:
            answers = host_answers(h)
            if h.control_plane and h.state == "ready":
                answers[CMD_NODES] = {"stdout": nodes}
                answers[CMD_PODS] = {"stdout": pods}
            elif h.control_plane:
                err = "The connection to the server localhost:8080 was refused - did you specify the right host or port?\n"
                answers[CMD_NODES] = answers[CMD_PODS] = {"stderr": err, "exit": 1}
            h.sshd.set_answers(answers)


def _kube_nodes(hosts: list[FakeHost]) -> list[KubeNode]:
    """The hosts that joined the cluster, as kubectl sees them."""
    return [KubeNode(h.private_dns, h.instance_id, h.zone, h.private_ip, h.control_plane, "True" if h.state == "ready" else "False")
            for h in hosts if h.state in ("ready", "notready")]


def node_list(hosts: list[FakeHost]) -> str:
    return kubectl.node_list(_kube_nodes(hosts))


def pod_list(hosts: list[FakeHost]) -> str:
    return kubectl.pod_list(_kube_nodes(hosts))


BOOT_ERROR = ("kubeadm join failed: error execution phase preflight: couldn't validate the identity of the API "
              "Server: cluster CA found in cluster-info ConfigMap is invalid")


def host_answers(h: FakeHost) -> dict[str, dict[str, Any]]:
    if h.state == "bootfail":
        state = {"phase": "kubeadm-join", "error": BOOT_ERROR, "updated": "2026-11-22T00:10:00Z"}
        ci = ("status: error\ntime: Sun, 22 Nov 2026 00:10:01 +0000\ndetail:\n"
              "('scripts_user', RuntimeError('Runparts: 1 failures (kopsy-bootstrap) in 1 attempted commands'))\n")
        log = ["00:09:58 fetching pki/ca.crt from the state store: ok",
               "00:09:59 phase kubeadm-join: running kubeadm join --config /etc/kopsy/kubeadm-join.yaml",
               f"00:10:00 {BOOT_ERROR}"]
    else:
        state = {"phase": "done", "error": None, "updated": "2026-11-22T00:05:00Z"}
        ci = "status: done\ntime: Sun, 22 Nov 2026 00:05:01 +0000\ndetail:\nDataSourceEc2Local\n"
        log = ["00:04:59 phase kubeadm-join: ok", "00:05:00 bootstrap done"]
    return {
        CMD_BOOTSTRAP: {"stdout": json.dumps(state) + "\n"},
        CMD_CLOUD_INIT: {"stdout": ci, "exit": 1 if h.state == "bootfail" else 0},
        CMD_LOG: {"stdout": "\n".join(log) + "\n"},
    }


def poll(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(step)


# --- helpers for clusters made by the real `kopsy update` (sandbox tests and bench) -----------------


def tagged_instances(ec2: Any, name: str) -> dict[str, dict[str, Any]]:
    res = ec2.describe_instances(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [name]},
                                          {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    return {i["InstanceId"]: i for r in res["Reservations"] for i in r["Instances"]}


def role_of(inst: dict[str, Any]) -> str:
    return next(t["Value"] for t in inst["Tags"] if t["Key"] == "kopsy.io/role")


def launch_with_wrong_endpoint(ec2: Any, like: dict[str, Any], count: int = 1) -> list[str]:
    """Instances like ``like`` (same group tags, subnet, security groups) whose user-data names a
    wrong API endpoint: the sandbox fault "wrong endpoint in user-data"."""
    tags = {t["Key"]: t["Value"] for t in like["Tags"]}
    data = ec2.describe_launch_template_versions(LaunchTemplateId=tags["aws:ec2launchtemplate:id"],
                                                 Versions=["$Latest"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    raw = base64.b64decode(data["UserData"])
    zipped = raw[:2] == b"\x1f\x8b"
    text = gzip.decompress(raw) if zipped else raw
    endpoint = re.search(rb"api-[a-z0-9.-]+\.elb\.amazonaws\.com", text)
    assert endpoint, "user-data names no API endpoint"
    bad = text.replace(endpoint.group(0), b"api.wrong.example.com")
    # the template's groups: moto gives ASG instances the VPC's default group instead
    groups = data.get("SecurityGroupIds") or [g for ni in data.get("NetworkInterfaces", []) for g in ni.get("Groups", [])]
    reservation = ec2.run_instances(
        ImageId=like["ImageId"], InstanceType=like["InstanceType"], MinCount=count, MaxCount=count,
        SubnetId=like["SubnetId"], SecurityGroupIds=groups, UserData=gzip.compress(bad) if zipped else bad,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [t for t in like["Tags"] if not t["Key"].startswith("aws:")]}])
    return [i["InstanceId"] for i in reservation["Instances"]]

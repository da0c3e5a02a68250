"""rolling-update end to end in the sandbox (1 control plane, 3 nodes), as the issue's "Must show":
a changed machine type rolls exactly the 3 nodes, each drained, never more than 4 node
instances at once, the control plane untouched; then nothing is left to do; then
``--force --cloudonly`` replaces the whole group. Also a drain blocked by a PDB.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from sandbox_helpers import Sandbox, ssh_run

from kopsy.sandbox import client
from kopsy.sandbox.packages import NEWEST_PATCH

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST = ["--interval", "0.5s", "--validation-timeout", "60s"]
CP_GROUP = "control-plane-us-east-1a"
PODS_ALL = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -A -o json"


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def group_instances(sb: Sandbox, cluster: str, group: str) -> dict[str, dict[str, Any]]:
    """id -> DescribeInstances entry of the group's pending/running instances (one filtered describe)."""
    res = sb.clients().client("ec2").describe_instances(Filters=[
        {"Name": "tag:kopsy.io/cluster", "Values": [cluster]}, {"Name": "tag:kopsy.io/instancegroup", "Values": [group]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])["Reservations"]
    return {i["InstanceId"]: i for r in res for i in r["Instances"]}


class Peak:
    """Counts a group's live instances in the background; ``done()`` gives the most seen at once."""

    def __init__(self, sb: Sandbox, cluster: str, group: str) -> None:
        self.sb, self.cluster, self.group = sb, cluster, group
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, len(group_instances(self.sb, self.cluster, self.group)))
            except Exception:  # a failed poll is skipped; the next one counts
                pass
            self.stop.wait(0.1)

    def done(self) -> int:
        self.stop.set()
        self.thread.join(5)
        return self.peak


def make_cluster(sb: Sandbox, name: str, nodes: int = 3) -> None:
    ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a", "--node-count", str(nodes),
                "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    ok(sb.kopsy("update", "cluster", name, "--yes"))
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))


def change_machine_type(sb: Sandbox, name: str, group: str, machine_type: str, tmp: Path) -> None:
    doc = yaml.safe_load(ok(sb.kopsy("get", "ig", group, "--name", name, "-o", "yaml")))
    doc["spec"]["machineType"] = machine_type
    (tmp / "ig.yaml").write_text(yaml.safe_dump(doc))
    ok(sb.kopsy("replace", "-f", str(tmp / "ig.yaml"), "--name", name))
    ok(sb.kopsy("update", "cluster", name, "--yes"))


def place(sb: Sandbox, cluster: str, **spec: Any) -> None:
    assert client.request(sb.layout.socket_id, {"op": "workload", "cluster": cluster, **spec}).get("ok")


def pods_on(sb: Sandbox, cluster: str, namespace: str) -> dict[str, str | None]:
    """pod name -> node name, as kubectl on the control plane lists them."""
    cp = next(iter(group_instances(sb, cluster, CP_GROUP).values()))
    out, err, code = ssh_run(sb.layout.ssh_config, cp["PublicIpAddress"], PODS_ALL, sb.home / ".ssh" / "id_ed25519")
    assert code == 0, err
    return {p["metadata"]["name"]: p["spec"].get("nodeName") for p in json.loads(out)["items"]
            if p["metadata"]["namespace"] == namespace}


def test_roll_replaces_exactly_the_changed_nodes(booting_sb: Sandbox, tmp_path: Path) -> None:
    sb = booting_sb
    name = "roll.example.com"
    make_cluster(sb, name)
    cp_before = set(group_instances(sb, name, CP_GROUP))
    old = group_instances(sb, name, "nodes")
    assert len(old) == 3
    place(sb, name, pods=[{"name": f"web-{n}", "labels": {"app": "web"}} for n in range(3)])
    assert set(pods_on(sb, name, "default").values()) <= {i["PrivateDnsName"] for i in old.values()}
    change_machine_type(sb, name, "nodes", "t3.large", tmp_path)

    table = ok(sb.kopsy("rolling-update", "cluster", name))
    rows = {line.split()[0]: line.split() for line in table.splitlines()[1:] if line.strip() and not line.startswith("Must")}
    assert rows["nodes"][1:3] == ["NeedsUpdate", "3"], table
    assert rows[CP_GROUP][1:3] == ["Ready", "0"], table
    assert table.strip().endswith("Must specify --yes to rolling-update.")
    doc = json.loads(ok(sb.kopsy("rolling-update", "cluster", name, "-o", "json")))
    nodes = next(g for g in doc["groups"] if g["name"] == "nodes")
    assert nodes["needUpdate"] == 3 and nodes["status"] == "NeedsUpdate" and nodes["role"] == "Node"

    peak = Peak(sb, name, "nodes")
    r = sb.kopsy("rolling-update", "cluster", name, "--yes", *FAST, timeout=300)
    most = peak.done()
    ok(r)
    assert "3 instance(s) replaced, 3 drained" in r.stdout, r.stdout + r.stderr
    for iid in old:
        assert f"{iid} (" in r.stderr
    assert r.stderr.count(": drained") == 3, r.stderr
    assert "left)" in r.stderr  # the time estimate
    new = group_instances(sb, name, "nodes")
    assert len(new) == 3 and not set(new) & set(old)
    assert {i["InstanceType"] for i in new.values()} == {"t3.large"}
    assert most <= 4, f"{most} node instances ran at once (desired 3 + surge 1)"
    assert set(group_instances(sb, name, CP_GROUP)) == cp_before
    assert set(pods_on(sb, name, "default").values()) <= {i["PrivateDnsName"] for i in new.values()}
    ok(sb.kopsy("validate", "cluster", name))
    assert "No rolling-update required." in ok(sb.kopsy("rolling-update", "cluster", name))

    r = sb.kopsy("rolling-update", "cluster", name, "--instance-group", "nodes", "--force", "--cloudonly", "--yes",
                 *FAST, timeout=300)
    ok(r)
    assert "not drained (--cloudonly)" in r.stderr
    final = group_instances(sb, name, "nodes")
    assert len(final) == 3 and not set(final) & set(new)
    assert set(group_instances(sb, name, CP_GROUP)) == cp_before
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))
    ok(sb.kopsy("delete", "cluster", name, "--yes"))


def test_drain_blocked_by_a_pdb_names_pod_and_budget(booting_sb: Sandbox) -> None:
    sb = booting_sb
    name = "pdb.example.com"
    make_cluster(sb, name, nodes=1)
    node = next(iter(group_instances(sb, name, "nodes")))
    place(sb, name, pods=[{"name": "db-0", "namespace": "prod", "labels": {"app": "db"}}],
          pdbs=[{"name": "db-budget", "namespace": "prod", "selector": {"app": "db"}, "minAvailable": 1}])
    r = sb.kopsy("rolling-update", "cluster", name, "--yes", "--force", "--instance-group", "nodes",
                 "--drain-timeout", "2s", *FAST, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pod prod/db-0 (PodDisruptionBudget prod/db-budget)" in r.stderr, r.stderr
    assert "did not finish within 2s" in r.stderr
    assert node in group_instances(sb, name, "nodes")  # still running: not terminated
    # The rerun finishes the detached instance first; told not to fail on a drain, it goes on and says so.
    r = sb.kopsy("rolling-update", "cluster", name, "--yes", "--instance-group", "nodes", "--fail-on-drain-error=false",
                 "--drain-timeout", "1s", *FAST, timeout=300)
    ok(r)
    assert "going on (--fail-on-drain-error=false)" in r.stderr and "PodDisruptionBudget prod/db-budget" in r.stderr
    assert node not in group_instances(sb, name, "nodes") and len(group_instances(sb, name, "nodes")) == 1
    ok(sb.kopsy("delete", "cluster", name, "--yes"))


def _kill_at(sb: Sandbox, args: list[str], marker: str) -> bool:
    """Run kopsy until its progress shows ``marker``, then SIGKILL it; False if it finished first."""
    import signal

    from sandbox_helpers import KOPSY

    p = subprocess.Popen([KOPSY, *args], env=sb.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stderr is not None
    killed = False
    for line in p.stderr:
        if marker in line:
            p.send_signal(signal.SIGKILL)
            killed = True
            break
    p.wait(120)
    return killed


def test_roll_killed_at_five_points_resumes_without_orphans(booting_sb: Sandbox, tmp_path: Path) -> None:
    """SIGKILL after: the detach, a drain, a terminate, a passing validation, and a later
    detach; each rerun (taking the dead run's lock) picks up where it stopped."""
    sb = booting_sb
    name = "kill.example.com"
    make_cluster(sb, name)
    old = set(group_instances(sb, name, "nodes"))
    change_machine_type(sb, name, "nodes", "t3.large", tmp_path)
    args = ["rolling-update", "cluster", name, "--yes", "--force-unlock", *FAST]
    points = [" detach ", ": drained", " terminate ", "validation passed", " detach "]
    kills = sum(_kill_at(sb, args, marker) for marker in points)
    assert kills >= 3, "the run finished before most kill points"
    ok(sb.kopsy(*args, timeout=300))
    now = group_instances(sb, name, "nodes")
    assert len(now) == 3 and not set(now) & old
    assert {i["InstanceType"] for i in now.values()} == {"t3.large"}
    tagged = [i for i in now.values() if any(t["Key"] == "kopsy.io/rolling-update-detached" for t in i.get("Tags", []))]
    assert tagged == [], "a detached instance was left running"
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))
    assert "No rolling-update required." in ok(sb.kopsy("rolling-update", "cluster", name))
    ok(sb.kopsy("delete", "cluster", name, "--yes", "--force-unlock"))


def _template_versions(sb: Sandbox, cluster: str) -> dict[str, str]:
    """instance group -> the kubernetesVersion its launch template's latest version installs."""
    import base64

    from kopsy.reconcile.builders.skew import rendered_version

    ec2 = sb.clients().client("ec2")
    out = {}
    for group in ("nodes", CP_GROUP):
        v = ec2.describe_launch_template_versions(LaunchTemplateName=f"{group}.{cluster}", Versions=["$Latest"])
        out[group] = rendered_version(base64.b64decode(v["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"]))
    return out


def test_upgrade_moves_control_planes_first_then_nodes(booting_sb: Sandbox) -> None:
    sb = booting_sb
    name = "upgrade.example.com"
    assert NEWEST_PATCH == 2  # the sandbox's package index: the default target is 1.36.2, not 1.36.0
    ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a", "--node-count", "2", "--kubernetes-version", "1.35.0",
                "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    ok(sb.kopsy("update", "cluster", name, "--yes"))
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))

    refused = sb.kopsy("upgrade", "cluster", name, "--kubernetes-version", "1.37.0")
    assert refused.returncode == 2 and "one minor at a time" in refused.stderr, refused.stderr
    down = sb.kopsy("upgrade", "cluster", name, "--kubernetes-version", "1.34.0")
    assert down.returncode == 2, down.stderr
    dry = ok(sb.kopsy("upgrade", "cluster", name))
    assert dry.split("\n")[0].split() == ["ITEM", "PROPERTY", "OLD", "NEW"]
    assert "Cluster  KubernetesVersion  1.35.0  1.36.2" in dry and "Must specify --yes to perform upgrade" in dry
    ok(sb.kopsy("upgrade", "cluster", name, "--yes"))

    r = sb.kopsy("update", "cluster", name, "--yes")
    ok(r)
    assert "stay on Kubernetes 1.35.0" in r.stderr
    assert _template_versions(sb, name) == {"nodes": "1.35.0", CP_GROUP: "1.36.2"}
    cp_old = set(group_instances(sb, name, CP_GROUP))
    r = sb.kopsy("rolling-update", "cluster", name, "--yes", "--instance-group-roles", "ControlPlane", *FAST, timeout=300)
    ok(r)
    assert "etcd snapshot (last member: kept)" in r.stderr, r.stderr
    calls = client.request(sb.layout.socket_id, {"op": "etcd-calls"})["calls"]
    assert [c[1] for c in calls if c[0] in cp_old] == ["etcd-snapshot"]
    assert not set(group_instances(sb, name, CP_GROUP)) & cp_old
    assert "kubeadm-config kubernetesVersion v1.35.0 -> v1.36.2" in r.stderr, r.stderr
    assert "kube-proxy image -> registry.k8s.io/kube-proxy:v1.36.2" in r.stderr
    new_cp = next(iter(group_instances(sb, name, CP_GROUP).values()))
    out, err, code = ssh_run(sb.layout.ssh_config, new_cp["PublicIpAddress"], PODS_ALL, sb.home / ".ssh" / "id_ed25519")
    images = {p["metadata"]["name"]: p["spec"]["containers"][0]["image"] for p in json.loads(out)["items"]}
    assert images[f"kube-apiserver-{new_cp['PrivateDnsName']}"] == "registry.k8s.io/kube-apiserver:v1.36.2", images

    ok(sb.kopsy("update", "cluster", name, "--yes"))
    assert _template_versions(sb, name) == {"nodes": "1.36.2", CP_GROUP: "1.36.2"}
    ok(sb.kopsy("rolling-update", "cluster", name, "--yes", *FAST, timeout=300))
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))
    listed = json.loads(ok(sb.kopsy("get", "instances", "--name", name, "-o", "json")))
    assert len(listed) == 3 and {i["kubernetesVersion"] for i in listed} == {"v1.36.2"}, listed
    assert {i["status"] for i in listed} == {"UpToDate"}
    ok(sb.kopsy("delete", "cluster", name, "--yes"))


def test_three_control_planes_roll_one_at_a_time_with_etcd_guard(booting_sb: Sandbox) -> None:
    sb = booting_sb
    name = "cp3.example.com"
    ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a,us-east-1b,us-east-1c", "--control-plane-count", "3",
                "--node-count", "1", "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    ok(sb.kopsy("update", "cluster", name, "--yes"))
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))
    groups = [f"control-plane-us-east-1{z}" for z in "abc"]
    old = {iid: i["PrivateDnsName"] for g in groups for iid, i in group_instances(sb, name, g).items()}
    assert len(old) == 3
    r = sb.kopsy("rolling-update", "cluster", name, "--yes", "--force", "--instance-group-roles", "ControlPlane",
                 *FAST, timeout=400)
    ok(r)
    assert r.stderr.count("deregistering from 2 API target group(s)") == 3, r.stderr
    assert r.stderr.count("etcd snapshot, then removing its member") == 3, r.stderr
    calls = client.request(sb.layout.socket_id, {"op": "etcd-calls"})["calls"]
    removals = [c for c in calls if c[1].startswith("etcd-remove-member")]
    assert sorted(c[1].split()[-1] for c in removals) == sorted(old.values())
    assert all(c[0] not in old or old[c[0]] != c[1].split()[-1] for c in removals), (old, calls)  # never on the member removed
    # One at a time: the steps of each control plane end (terminate) before the next one's cordon.
    steps = [line.split()[1] for line in r.stderr.splitlines() if line.split()[1:2] and line.split()[1] in ("cordon", "terminate")]
    assert steps == ["cordon", "terminate"] * 3, steps
    now = {iid for g in groups for iid in group_instances(sb, name, g)}
    assert len(now) == 3 and not now & set(old)
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))
    ok(sb.kopsy("delete", "cluster", name, "--yes"))


def test_roll_converges_under_20_percent_api_faults(booting_sb: Sandbox, tmp_path: Path) -> None:
    """kopsy's calls go through the fault proxy (bench/awsproxy.py: 503s and throttling, as
    AWS sends them, on a fifth of the calls); the sandbox's own reads go to moto directly."""
    sb = booting_sb
    import sys

    bench = str(Path(__file__).resolve().parents[2] / "bench")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    from awsproxy import AwsProxy

    name = "faults-roll.example.com"
    make_cluster(sb, name, nodes=2)
    old = set(group_instances(sb, name, "nodes"))
    change_machine_type(sb, name, "nodes", "t3.large", tmp_path)
    with AwsProxy(sb.info.endpoint, seed=16) as proxy:
        proxy.set_faults(0.2)
        env = {**sb.env, "AWS_ENDPOINT_URL": proxy.url}
        from sandbox_helpers import run

        r = run(["rolling-update", "cluster", name, "--yes", *FAST], env, timeout=400)
        if r.returncode != 0:  # a budget ran out on an unlucky streak: a rerun resumes
            r = run(["rolling-update", "cluster", name, "--yes", "--force-unlock", *FAST], env, timeout=400)
        ok(r)
    now = group_instances(sb, name, "nodes")
    assert len(now) == 2 and not set(now) & old
    assert not [i for i in now.values() if any(t["Key"] == "kopsy.io/rolling-update-detached" for t in i.get("Tags", []))]
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))
    ok(sb.kopsy("delete", "cluster", name, "--yes"))


def _coredns(sb: Sandbox, cluster: str) -> tuple[str, set[str]]:
    """The coredns Deployment's image and its pods' images, as kubectl on a control plane shows them."""
    cp = next(iter(group_instances(sb, cluster, CP_GROUP).values()))
    key = sb.home / ".ssh" / "id_ed25519"
    out, err, code = ssh_run(sb.layout.ssh_config, cp["PublicIpAddress"],
                             "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system get deployment coredns -o json", key)
    assert code == 0, err
    deployment = json.loads(out)["spec"]["template"]["spec"]["containers"][0]["image"]
    out, err, code = ssh_run(sb.layout.ssh_config, cp["PublicIpAddress"], PODS_ALL, key)
    assert code == 0, err
    pods = {p["spec"]["containers"][0]["image"] for p in json.loads(out)["items"]
            if p["metadata"]["labels"].get("k8s-app") == "coredns"}
    return deployment, pods


def test_upgrade_roll_runs_the_whole_sequence_and_a_rerun_finishes_it(booting_sb: Sandbox) -> None:
    """``upgrade --yes --roll`` from the older supported minor: killed once the control plane
    was replaced (before CoreDNS moved), a plain rerun finishes the same upgrade (not the next
    minor), CoreDNS ends at what the new control plane's kubeadm lists, every instance at the
    new version; a further rerun changes nothing; the dry run writes nothing."""
    from kopsy.spec.versions import SUPPORTED_MINORS

    sb = booting_sb
    old_minor, new_minor = SUPPORTED_MINORS[0], SUPPORTED_MINORS[1]
    old_v, new_v = f"{old_minor}.0", f"{new_minor}.{NEWEST_PATCH}"  # the sandbox index's newest patch
    name = "uproll.example.com"
    ok(sb.kopsy("create", "cluster", name, "--zones", "us-east-1a", "--node-count", "2", "--kubernetes-version", old_v,
                "--ssh-public-key", str(sb.home / ".ssh" / "id_ed25519.pub")))
    ok(sb.kopsy("update", "cluster", name, "--yes"))
    ok(sb.kopsy("validate", "cluster", name, "--wait", "60s", "--interval", "0.5s"))
    stand_in = "registry.k8s.io/coredns/coredns:sandbox-kubeadm-v{}"
    assert _coredns(sb, name) == (stand_in.format(old_v), {stand_in.format(old_v)})

    refused = sb.kopsy("upgrade", "cluster", name, "--max-surge", "2")
    assert refused.returncode == 2 and "--max-surge only apply with --roll" in refused.stderr, refused.stderr
    before = {**group_instances(sb, name, "nodes"), **group_instances(sb, name, CP_GROUP)}
    spec_before = ok(sb.kopsy("get", "cluster", name, "-o", "yaml"))
    dry = ok(sb.kopsy("upgrade", "cluster", name, "--roll"))
    assert f"Cluster  KubernetesVersion  {old_v}  {new_v}" in dry, dry
    assert f"kopsy rolling-update cluster {name} --yes --instance-group-roles ControlPlane" in dry
    assert dry.strip().endswith("Must specify --yes to perform upgrade"), dry
    assert ok(sb.kopsy("get", "cluster", name, "-o", "yaml")) == spec_before
    assert _template_versions(sb, name) == {"nodes": old_v, CP_GROUP: old_v}

    args = ["upgrade", "cluster", name, "--yes", "--roll", "--force-unlock", *FAST]
    assert _kill_at(sb, args, "asking kubeadm on"), "the run finished before CoreDNS was asked"
    assert not set(group_instances(sb, name, CP_GROUP)) & set(before)  # the control plane was replaced
    assert _coredns(sb, name)[0] == stand_in.format(old_v)  # killed before CoreDNS moved
    # killed in the control-plane roll, yet the lock it left is the sequence's: held for all of it
    held = sb.kopsy("update", "cluster", name, "--yes")
    assert held.returncode != 0 and "running upgrade cluster --roll since" in held.stderr, held.stderr

    r = sb.kopsy(*args, timeout=600)
    ok(r)
    assert "finishing that upgrade" in r.stdout, r.stdout
    assert f"coredns image {stand_in.format(old_v)} -> {stand_in.format(new_v)}" in r.stderr, r.stderr
    for n in range(1, 7):
        assert f"[{n}/6]" in r.stderr
    assert f"Upgrade of cluster {name} to {new_v} done" in r.stdout
    assert _coredns(sb, name) == (stand_in.format(new_v), {stand_in.format(new_v)})
    listed = json.loads(ok(sb.kopsy("get", "instances", "--name", name, "-o", "json")))
    assert len(listed) == 3 and {i["kubernetesVersion"] for i in listed} == {f"v{new_v}"}, listed
    assert {i["status"] for i in listed} == {"UpToDate"}
    assert not {i["id"] for i in listed} & set(before)
    assert f"kubernetesVersion: {new_v}" in ok(sb.kopsy("get", "cluster", name, "-o", "yaml"))
    ok(sb.kopsy("validate", "cluster", name))

    after = {i["id"] for i in listed}
    r = sb.kopsy("upgrade", "cluster", name, "--kubernetes-version", new_v, "--yes", "--roll", *FAST, timeout=300)
    ok(r)
    assert "no upgrade required" in r.stdout and r.stdout.count("No rolling-update required.") == 2, r.stdout
    assert r.stdout.count("No changes need to be applied") == 2, r.stdout
    assert "coredns image" not in r.stderr
    assert {i["id"] for i in json.loads(ok(sb.kopsy("get", "instances", "--name", name, "-o", "json")))} == after
    ok(sb.kopsy("delete", "cluster", name, "--yes"))

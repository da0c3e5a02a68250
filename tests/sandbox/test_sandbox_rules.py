"""The readiness rules and the answer formats, as pure functions (no processes)."""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timezone
from pathlib import Path

from kopsy.sandbox.answers import answer
from kopsy.sandbox.facts import ApiLoadBalancer, CaFact, IngressRule, Instance, World
from kopsy.sandbox.rules import decode_user_data, evaluate
from kopsy.spec.defaults import CreateOptions, new_cluster

NAME = "rules.example.com"
STORE = f"s3://bucket/{NAME}"
HASH = "sha256:" + "a" * 64
DNS = "api-rules.elb.us-east-1.amazonaws.com"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _user_data(role: str, endpoint: str = f"{DNS}:443", ca: str = HASH) -> bytes:
    from kopsy.bootstrap import render_user_data

    cluster, igs = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    ig = next(g for g in igs if g.role == role)
    return render_user_data(cluster, ig, api_endpoint=endpoint, ca_cert_hash=ca, state_store_url=STORE)


def _inst(iid: str, role: str, ip: str, sg: str, data: bytes | None = None, state: str = "running",
          public_ip: str | None = None) -> Instance:
    return Instance(
        id=iid, state=state, cluster=NAME, role=role, instance_group="x", zone="us-east-1a", instance_type="t3.medium",
        image_id="ami-1", private_ip=ip, private_dns=f"ip-{ip.replace('.', '-')}.ec2.internal", public_ip=public_ip,
        security_groups=(sg,), key_name=None, launch_time="2026-01-01T00:00:00Z",
        user_data=data if data is not None else _user_data(role),
    )


def _world(*instances: Instance, cp_rules: tuple[IngressRule, ...] | None = None, node_rules: tuple[IngressRule, ...] | None = None,
           lbs: tuple[ApiLoadBalancer, ...] | None = None, lb_rules: dict[str, tuple[IngressRule, ...]] | None = None,
           addons: dict[str, str | None] | None = None) -> World:
    everything = IngressRule("-1", 0, 65535, frozenset({"sg-cp", "sg-nodes", "sg-api", "sg-int"}), ())
    lbs = lbs if lbs is not None else (ApiLoadBalancer("arn:lb", DNS, frozenset({"i-cp"}), scheme="internal"),)
    return World(
        taken_at=0.0,
        instances=instances,
        ingress={"sg-cp": cp_rules if cp_rules is not None else (everything,), "sg-nodes": node_rules if node_rules is not None else (everything,),
                 **(lb_rules or {})},
        api={NAME: {lb.endpoint: lb for lb in lbs}},
        api_endpoint={NAME: f"{DNS}:443"},
        ca={STORE: CaFact(HASH, None)},
        addons={STORE: addons if addons is not None else dict(_stored_addons())},
    )


def _stored_addons() -> dict[str, str | None]:
    """The sums of the addons as `update --yes` writes them (what the first control plane fetches)."""
    from kopsy.bootstrap.addons import addon_hashes

    return dict(addon_hashes(new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))[0]))


CP = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp")
NODE = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes")


def test_consistent_cluster_is_ready() -> None:
    v = evaluate(_world(CP, NODE))
    assert [(x.joined, x.ready, x.phase) for x in v.values()] == [(True, "True", "done")] * 2


def test_each_rule_names_its_phase_and_reason() -> None:
    cases = {
        "wrong endpoint": (_world(CP, _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", _user_data("Node", "wrong.example.com:443"))),
                           "wait-for-api", "cannot reach API endpoint wrong.example.com:443"),
        "no 6443": (_world(CP, NODE, cp_rules=(IngressRule("tcp", 2379, 2381, frozenset({"sg-nodes"}), ()),)),
                    "wait-for-api", "tcp/6443"),
        "ca hash": (_world(CP, _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", _user_data("Node", ca="sha256:" + "b" * 64))),
                    "kubeadm-join", "sha256:" + "b" * 64),
        "not registered": (_world(_inst("i-cp2", "ControlPlane", "10.0.0.11", "sg-cp"), NODE), "kubeadm-init", "not registered"),
        "no control plane": (_world(NODE), "wait-for-api", "no control plane answers"),
        "control plane pins another CA": (
            _world(_inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", _user_data("ControlPlane", ca="sha256:" + "c" * 64)), NODE),
            "fetch", "sha256:" + "c" * 64),
        "not cloud-init": (_world(CP, _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", b"hello")), None, "not valid cloud-init"),
    }
    for case, (world, phase, needle) in cases.items():
        verdicts = evaluate(world)
        bad = [v for v in verdicts.values() if not v.joined]
        assert bad, case
        assert bad[0].phase == phase and needle in (bad[0].error or ""), (case, bad[0])


def test_kubelet_port_closed_means_joined_but_not_ready() -> None:
    v = evaluate(_world(CP, NODE, node_rules=(IngressRule("tcp", 22, 22, frozenset(), ("0.0.0.0/0",)),)))["i-n1"]
    assert (v.joined, v.ready, v.reason) == (True, "False", "KubeletNotReady") and "10250" in v.message


def test_cidr_rules_count_like_group_rules() -> None:
    rules = (IngressRule("tcp", 10250, 10250, frozenset(), ("10.0.0.0/28",)),)
    assert evaluate(_world(CP, NODE, node_rules=rules))["i-n1"].ready == "True"


def test_machine_down_is_unknown() -> None:
    v = evaluate(_world(CP, NODE), frozenset({"i-n1"}))["i-n1"]
    assert (v.ready, v.reason) == ("Unknown", "NodeStatusUnknown")


def test_user_data_formats() -> None:
    good = _user_data("Node")
    assert decode_user_data(good).config is not None  # gzip from the real renderer
    assert decode_user_data(gzip.decompress(good)).config is not None
    mime = (b'Content-Type: multipart/mixed; boundary="B"\nMIME-Version: 1.0\n\n--B\nContent-Type: text/cloud-config\n\n'
            + gzip.decompress(good) + b"\n--B--\n")
    assert decode_user_data(mime).config is not None
    assert "not valid cloud-init" in (decode_user_data(b"hello").problem or "")
    assert "bad YAML" in (decode_user_data(b"#cloud-config\n: [\n").problem or "")
    assert "no usable kopsy bootstrap config" in (decode_user_data(b"#!/bin/sh\necho hi\n").problem or "")


def test_answers_follow_contract_5() -> None:
    world = _world(CP, NODE)
    v = evaluate(world)
    nodes = answer(world, v, "i-cp", "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json", NOW)
    doc = json.loads(nodes.stdout)
    assert nodes.exit == 0 and [n["spec"]["providerID"] for n in doc["items"]] == ["aws:///us-east-1a/i-cp", "aws:///us-east-1a/i-n1"]
    status = json.loads(answer(world, v, "i-n1", "sudo cat /var/lib/kopsy/bootstrap.json", NOW).stdout)
    assert set(status) == {"phase", "error", "updated"}
    tail = answer(world, v, "i-n1", "sudo tail -n 3 /var/log/kopsy-bootstrap.log", NOW)
    assert len(tail.stdout.splitlines()) == 3
    assert answer(world, v, "i-n1", "uname -a", NOW).exit == 127
    assert answer(world, v, "i-n1", "kubectl get nodes -o json", NOW).exit == 1  # no kubeconfig: localhost:8080


def test_docs_list_every_readiness_rule() -> None:
    """docs/sandbox.md lists the rules of kopsy/sandbox/rules.py, one numbered item per rule."""
    import re
    from pathlib import Path

    import kopsy.sandbox.rules as rules_module

    docs = (Path(__file__).resolve().parents[2] / "docs" / "sandbox.md").read_text()
    section = docs.split("## The readiness rules (`kopsy/sandbox/rules.py`)", 1)[1].split("\n## ", 1)[0]
    numbered = re.compile(r"^(\d+)\. ", re.M)
    in_module = numbered.findall(rules_module.__doc__ or "")
    in_docs = numbered.findall(section)
    assert in_module and in_docs == in_module


# --- the path to the API: by the load balancer's scheme (issue: a restricted API must not cut the
# cluster off from itself) -------------------------------------------------------------------

PUBLIC_DNS = "api-rules-public.elb.us-east-1.amazonaws.com"
ADMIN = (IngressRule("tcp", 443, 443, frozenset(), ("203.0.113.0/24",)),)  # kubernetesApiAccess: an admin range only
INTERNAL_RULES = (IngressRule("tcp", 443, 443, frozenset({"sg-cp", "sg-nodes"}), ()),)


def _two_lbs(**kw: object) -> tuple[ApiLoadBalancer, ApiLoadBalancer]:
    public = ApiLoadBalancer("arn:public", PUBLIC_DNS, frozenset({"i-cp"}), ("sg-api",), "internet-facing")
    internal = ApiLoadBalancer("arn:internal", DNS, frozenset({"i-cp"}), ("sg-int",), "internal")
    return public, internal


def _restricted(*instances: Instance) -> World:
    return _world(*instances, lbs=_two_lbs(), lb_rules={"sg-api": ADMIN, "sg-int": INTERNAL_RULES})


def test_a_restricted_public_api_leaves_the_internal_path_open() -> None:
    cp = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", public_ip="54.0.0.10")
    node = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", public_ip="54.0.0.20")
    v = evaluate(_restricted(cp, node))
    assert [(x.joined, x.ready) for x in v.values()] == [(True, "True")] * 2


def test_nodes_pointed_at_the_restricted_public_endpoint_never_join() -> None:
    """The defect as it was: traffic to the internet-facing NLB arrives from the node's public IP,
    which ``kubernetesApiAccess`` does not admit, whatever the node's groups."""
    cp = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", public_ip="54.0.0.10")
    node = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", _user_data("Node", f"{PUBLIC_DNS}:443"), public_ip="54.0.0.20")
    bad = evaluate(_restricted(cp, node))["i-n1"]
    assert (bad.joined, bad.phase) == (False, "wait-for-api")
    assert "admits tcp/443 only from 203.0.113.0/24" in (bad.error or "") and "54.0.0.20" in (bad.error or ""), bad


def test_a_public_endpoint_without_a_public_ip_is_unreachable() -> None:
    cp = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", public_ip="54.0.0.10")
    node = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", _user_data("Node", f"{PUBLIC_DNS}:443"))
    world = _world(cp, node, lbs=_two_lbs(), lb_rules={"sg-api": (IngressRule("tcp", 443, 443, frozenset(), ("0.0.0.0/0",)),),
                                                         "sg-int": INTERNAL_RULES})
    bad = evaluate(world)["i-n1"]
    assert bad.phase == "wait-for-api" and "has no public IP" in (bad.error or ""), bad


def test_group_references_do_not_admit_traffic_to_an_internet_facing_load_balancer() -> None:
    cp = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", public_ip="54.0.0.10")
    node = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", _user_data("Node", f"{PUBLIC_DNS}:443"), public_ip="54.0.0.20")
    by_group = (IngressRule("tcp", 443, 443, frozenset({"sg-cp", "sg-nodes"}), ()),)
    bad = evaluate(_world(cp, node, lbs=_two_lbs(), lb_rules={"sg-api": by_group, "sg-int": INTERNAL_RULES}))["i-n1"]
    assert bad.phase == "wait-for-api" and "security-group references do not match" in (bad.error or ""), bad


def test_an_internal_load_balancer_that_does_not_admit_the_nodes_blocks_them() -> None:
    cp = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp")
    node = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes")
    only_cp = (IngressRule("tcp", 443, 443, frozenset({"sg-cp"}), ()),)
    v = evaluate(_world(cp, node, lbs=_two_lbs(), lb_rules={"sg-api": ADMIN, "sg-int": only_cp}))
    assert v["i-cp"].joined and not v["i-n1"].joined
    assert "internal load balancer's security groups admit neither" in (v["i-n1"].error or "")


def test_a_load_balancer_that_routes_to_no_joined_control_plane_is_no_help() -> None:
    """The node's endpoint must lead to a joined control plane: one registered with that load
    balancer's target group (here the control plane joined through the internal one only)."""
    cp = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", public_ip="54.0.0.10")
    node = _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", _user_data("Node", f"{PUBLIC_DNS}:443"), public_ip="54.0.0.20")
    public, internal = _two_lbs()
    empty_public = ApiLoadBalancer(public.arn, public.dns_name, frozenset(), public.security_groups, public.scheme)
    open_to_all = (IngressRule("tcp", 443, 443, frozenset(), ("0.0.0.0/0",)),)
    v = evaluate(_world(cp, node, lbs=(empty_public, internal), lb_rules={"sg-api": open_to_all, "sg-int": INTERNAL_RULES}))
    assert v["i-cp"].joined and not v["i-n1"].joined
    assert "none is registered with its target group" in (v["i-n1"].error or ""), v["i-n1"]


def test_a_control_plane_outside_its_endpoints_target_group_does_not_come_up() -> None:
    cp = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp")
    public, internal = _two_lbs()
    unregistered = ApiLoadBalancer(internal.arn, internal.dns_name, frozenset(), internal.security_groups, "internal")
    v = evaluate(_world(cp, lbs=(public, unregistered), lb_rules={"sg-api": ADMIN, "sg-int": INTERNAL_RULES}))
    assert not v["i-cp"].joined and "not registered" in (v["i-cp"].error or "")


def test_the_ccm_runs_only_from_addons_whose_bytes_match_their_pins() -> None:
    """One addon changed in the store: the first control plane refuses it (phase addons), and no
    node is Ready, each saying the cloud-controller-manager is not running and why."""
    stored = _stored_addons()
    key = next(k for k in stored if "ebs-csi" in k)
    v = evaluate(_world(CP, NODE, addons={**stored, key: "0" * 64}))
    cp, node = v["i-cp"], v["i-n1"]
    assert (cp.joined, cp.ready, cp.phase) == (True, "False", "addons")
    nodes = json.loads(answer(_world(CP, NODE, addons={**stored, key: "0" * 64}), v, "i-cp",
                              "kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json", NOW).stdout)
    for n in nodes["items"]:  # registered by kubelet --cloud-provider=external, never initialised
        assert {"effect": "NoSchedule", "key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true"} in n["spec"]["taints"]
    assert f"{key} has sha256 {'0' * 64}" in cp.error and "refusing it" in cp.error
    assert (node.joined, node.ready, node.reason, node.phase) == (True, "False", "KubeletNotReady", "done")
    assert node.message.startswith("node.cloudprovider.kubernetes.io/uninitialized: the cloud-controller-manager is not running")
    assert key in node.message
    missing = evaluate(_world(CP, NODE, addons={k: s for k, s in stored.items() if k != key}))
    assert "is not in the state store" in missing["i-cp"].error
    assert missing["i-n1"].ready == "False"


def test_a_kubelet_without_the_external_cloud_provider_is_not_ready() -> None:
    import dataclasses

    from kopsy.bootstrap import render_cloud_config
    from kopsy.bootstrap.render import bootstrap_config

    cluster, igs = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    cfg = bootstrap_config(cluster, next(g for g in igs if g.role == "Node"), api_endpoint=f"{DNS}:443", ca_cert_hash=HASH,
                           state_store_url=STORE)
    data = gzip.compress(render_cloud_config(dataclasses.replace(cfg, cloudProvider="")).encode())
    v = evaluate(_world(CP, _inst("i-n1", "Node", "10.0.0.20", "sg-nodes", data)))
    assert v["i-cp"].ready == "True"
    node = v["i-n1"]
    assert (node.joined, node.ready, node.reason) == (True, "False", "KubeletNotReady")
    assert "without --cloud-provider=external" in node.message


def test_the_pods_include_the_ccm_and_csi_driver() -> None:
    world = _world(CP, NODE)
    pods = json.loads(answer(world, evaluate(world), "i-cp",
                             "kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -n kube-system -o json", NOW).stdout)
    names = [p["metadata"]["name"].rsplit("-", 1)[0] for p in pods["items"]]
    assert names.count("aws-cloud-controller-manager") == 1  # one per control plane
    assert names.count("ebs-csi-node") == 2  # one per node
    assert sum(n.startswith("ebs-csi-controller") for n in names) == 1
    broken = _world(CP, NODE, addons={k: "0" * 64 for k in _stored_addons()})
    pods = json.loads(answer(broken, evaluate(broken), "i-cp",
                             "kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -n kube-system -o json", NOW).stdout)
    ccm = [p for p in pods["items"] if p["metadata"]["name"].startswith("aws-cloud-controller-manager")]
    assert ccm and all(c["status"]["conditions"][-1]["status"] != "True" or c["status"]["phase"] != "Running" for c in ccm)


def test_booting_instances_pass_their_phases_and_nodes_wait_for_a_booting_control_plane() -> None:
    early = evaluate(_world(CP, NODE), booting={"i-cp": 0.3})
    assert not early["i-cp"].joined and early["i-cp"].error is None and early["i-cp"].phase not in (None, "done")
    assert not early["i-n1"].joined  # no control plane answers yet
    late = evaluate(_world(CP, NODE), booting={"i-n1": 0.9})
    assert late["i-cp"].joined and not late["i-n1"].joined and late["i-n1"].phase == "kubeadm-join"
    broken = _inst("i-n2", "Node", "10.0.0.30", "sg-nodes", data=b"#cloud-config\n: [")
    assert evaluate(_world(CP, broken), booting={"i-n2": 0.1})["i-n2"].error  # broken says why at once


def test_a_joined_control_plane_stays_a_node_when_deregistered() -> None:
    out = _world(CP, NODE, lbs=(ApiLoadBalancer("arn:lb", DNS, frozenset(), scheme="internal"),))
    assert not evaluate(out)["i-cp"].joined  # never joined: its kubeadm needed the target group
    assert evaluate(out, joined_before=frozenset({"i-cp"}))["i-cp"].joined


def _cp_user_data(version: str) -> bytes:
    from kopsy.bootstrap import render_user_data
    from kopsy.spec.model import replace

    cluster, igs = new_cluster(CreateOptions(name=NAME, zones=["us-east-1a"]))
    ig = next(g for g in igs if g.role == "ControlPlane")
    return render_user_data(replace(cluster, kubernetes_version=version), ig, api_endpoint=f"{DNS}:443", ca_cert_hash=HASH,
                            state_store_url=STORE)


def test_a_new_control_plane_runs_what_kubeadm_config_says_not_its_own_version() -> None:
    """The rule behind rolling-update's kubeadm-config step: without it, a 1.36 control plane
    joining a 1.35 cluster runs 1.35 static pods; after the patch, 1.36."""
    from kopsy.sandbox.workloads import Workloads

    old = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", data=_cp_user_data("1.35.0"))
    lbs = (ApiLoadBalancer("arn:lb", DNS, frozenset({"i-cp", "i-cp2", "i-cp3"}), scheme="internal"),)
    w = Workloads()
    world = _world(old, lbs=lbs)
    w.observe(world, evaluate(world))
    unsynced = _inst("i-cp2", "ControlPlane", "10.0.0.11", "sg-cp", data=_cp_user_data("1.36.0"))
    world = _world(old, unsynced, lbs=lbs)
    w.observe(world, evaluate(world))
    assert w.static_version[unsynced.private_dns] == "1.35.0"
    patch = json.dumps({"data": {"ClusterConfiguration": "kubernetesVersion: v1.36.0\n"}})
    now = datetime.now(timezone.utc)
    a = w.answer(world, evaluate(world), "i-cp", f"sudo kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system "
                 f"patch configmap kubeadm-config --type merge -p '{patch}'", now)
    assert a is not None and a.exit == 0
    synced = _inst("i-cp3", "ControlPlane", "10.0.0.12", "sg-cp", data=_cp_user_data("1.36.0"))
    world = _world(old, unsynced, synced, lbs=lbs)
    w.observe(world, evaluate(world))
    assert w.static_version[synced.private_dns] == "1.36.0"


def test_coredns_follows_the_kubeadm_of_the_instance_asked() -> None:
    """The sandbox's CoreDNS stand-in: kubeadm lists the tag of its *own* version (not of
    --kubernetes-version), the Deployment starts at the first control plane's, and set image moves it."""
    from kopsy.rolling.kubeadm_config import coredns_image
    from kopsy.sandbox.workloads import Workloads, coredns_stand_in

    old = _inst("i-cp", "ControlPlane", "10.0.0.10", "sg-cp", data=_cp_user_data("1.35.0"))
    new = _inst("i-cp2", "ControlPlane", "10.0.0.11", "sg-cp", data=_cp_user_data("1.36.0"))
    lbs = (ApiLoadBalancer("arn:lb", DNS, frozenset({"i-cp", "i-cp2"}), scheme="internal"),)
    w = Workloads()
    world = _world(old, new, lbs=lbs)
    verdicts = evaluate(world)
    now = datetime.now(timezone.utc)
    w.observe(world, verdicts)
    kubectl = "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf -n kube-system "

    def run(iid: str, command: str) -> str:
        a = w.answer(world, verdicts, iid, command, now)
        assert a is not None and a.exit == 0, a
        return a.stdout

    def deployed() -> str:
        return str(json.loads(run("i-cp", kubectl + "get deployment coredns -o json"))["spec"]["template"]["spec"]["containers"][0]["image"])

    assert deployed() == coredns_stand_in("1.35.0")
    listed = run("i-cp2", "sudo kubeadm config images list --kubernetes-version v1.36.0")
    assert "registry.k8s.io/kube-apiserver:v1.36.0" in listed
    assert coredns_image(listed) == coredns_stand_in("1.36.0") == "registry.k8s.io/coredns/coredns:sandbox-kubeadm-v1.36.0"
    assert coredns_image(run("i-cp", "kubeadm config images list --kubernetes-version v1.36.0")) == coredns_stand_in("1.35.0")
    run("i-cp", kubectl + f"set image deployment/coredns coredns={coredns_stand_in('1.36.0')}")
    assert deployed() == coredns_stand_in("1.36.0")
    assert "successfully rolled out" in run("i-cp", kubectl + "rollout status deployment/coredns --timeout=60s")


def test_coredns_image_is_found_in_kubeadms_list() -> None:
    from kopsy.rolling.kubeadm_config import coredns_image

    listed = "registry.k8s.io/kube-proxy:v1.36.0\nregistry.k8s.io/coredns/coredns:v1.12.1\nregistry.k8s.io/pause:3.10\n"
    assert coredns_image(listed) == "registry.k8s.io/coredns/coredns:v1.12.1"
    assert coredns_image("my.registry:5000/coredns:1.11.3\n") == "my.registry:5000/coredns:1.11.3"
    assert coredns_image("registry.k8s.io/pause:3.10\n") == ""


def test_a_version_the_package_repository_does_not_publish_stops_in_packages(tmp_path: Path) -> None:
    """The rule behind upgrade's patch lookup: an instance installs kubeadm, kubelet and kubectl
    at its user-data's version, which must be in the repository's index (here the sandbox's own)."""
    import dataclasses

    from kopsy.sandbox import packages

    world = _world(CP, NODE)
    published = packages.published_versions(Path(packages.write_index(tmp_path / "packages").removeprefix("file://")))
    assert published and f"1.36.{packages.NEWEST_PATCH}" in published
    ok = evaluate(dataclasses.replace(world, published=published))
    assert [(v.joined, v.ready) for v in ok.values()] == [(True, "True")] * 2
    version = next(iter(ok.values())).config.kubernetesVersion.lstrip("v")  # type: ignore[union-attr]
    broken = evaluate(dataclasses.replace(world, published=published - {version}))
    for v in broken.values():
        assert (v.joined, v.phase) == (False, "packages"), v
        assert v.error == (f"kubeadm, kubelet and kubectl {version} are not in the package repository "
                           f"(pkgs.k8s.io/core:/stable:/v{version.rsplit('.', 1)[0]}/deb)")
    assert packages.published_versions(tmp_path / "absent") is None  # no index: versions are not judged

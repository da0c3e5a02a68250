"""Unit tests for the spec model, defaults and validation (pure functions)."""

from __future__ import annotations

import pytest

from kopsy.errors import SpecInvalid
from kopsy.spec.defaults import CreateOptions, carve_subnets, new_cluster
from kopsy.spec.documents import parse_documents
from kopsy.spec.model import (
    cluster_from_dict,
    cluster_to_dict,
    instance_group_from_dict,
    instance_group_to_dict,
    parse_taint,
)
from kopsy.spec.validation import validate_cluster
from kopsy.spec.versions import SUPPORTED_MINORS, version_problem


def make(**kw: object):
    opts = CreateOptions(name="demo.example.com", zones=["us-east-1a", "us-east-1b", "us-east-1c"])
    for k, v in kw.items():
        setattr(opts, k, v)
    return new_cluster(opts)


def problems_of(cluster, groups) -> list[str]:
    try:
        validate_cluster(cluster, groups)
    except SpecInvalid as exc:
        return exc.problems
    return []


def test_defaults_are_valid_and_follow_kops() -> None:
    cluster, groups = make(control_plane_count=3)
    assert problems_of(cluster, groups) == []
    assert [s.cidr for s in cluster.subnets] == ["172.20.32.0/19", "172.20.64.0/19", "172.20.96.0/19"]
    assert [g.name for g in groups] == [
        "control-plane-us-east-1a", "control-plane-us-east-1b", "control-plane-us-east-1c", "nodes",
    ]
    assert all(g.min_size == g.max_size == 1 for g in groups[:3])
    assert groups[3].subnets == cluster.zones and groups[3].min_size == 2
    assert cluster.region == "us-east-1" and cluster.networking == "calico"


def test_three_control_planes_in_one_zone_get_distinct_groups() -> None:
    cluster, groups = new_cluster(CreateOptions(name="a.b", zones=["eu-west-1a"], control_plane_count=3))
    assert [g.name for g in groups if g.is_control_plane] == [
        "control-plane-eu-west-1a-1", "control-plane-eu-west-1a-2", "control-plane-eu-west-1a-3",
    ]
    assert problems_of(cluster, groups) == []


def test_round_trip_through_documents() -> None:
    cluster, groups = make()
    groups[-1].taints = [parse_taint("dedicated=gpu:NoSchedule")]  # type: ignore[list-item]
    groups[-1].node_labels = {"team": "infra"}
    cluster.annotations = {"kopsy.io/ssh-public-key-path": "/k.pub"}
    assert cluster_from_dict(cluster_to_dict(cluster)) == cluster
    for g in groups:
        assert instance_group_from_dict(instance_group_to_dict(g)) == g


def test_carving_many_zones_uses_smaller_blocks() -> None:
    assert len(carve_subnets("172.20.0.0/16", 10)) == 10
    assert carve_subnets("172.20.0.0/16", 10)[0] == "172.20.16.0/20"


@pytest.mark.parametrize(
    "change, expected",
    [
        (dict(name="Demo"), "metadata.name"),
        (dict(name="x" * 51), "longer than 50"),
        (dict(kubernetes_version="1.20.3"), "spec.kubernetesVersion"),
        (dict(zones=["us-east-1a", "eu-west-1a"]), "all zones must be in one region"),
        (dict(zones=["useast1"]), "not an AWS availability zone"),
        (dict(control_plane_count=2), "1, 3 or 5"),
        (dict(node_size="big"), "spec.machineType"),
        (dict(image="ubuntu"), "spec.image"),
        (dict(ssh_access=["1.2.3.4/40"]), "spec.sshAccess[0]"),
        (dict(api_access=[]), "spec.kubernetesApiAccess"),
        (dict(node_count=-1), "spec.minSize"),
    ],
)
def test_each_rule_names_its_field(change: dict, expected: str) -> None:
    try:
        cluster, groups = make(**change)
    except SpecInvalid as exc:  # counts are refused before any group is built from them
        assert any(expected in p for p in exc.problems), exc.problems
        return
    assert any(expected in p for p in problems_of(cluster, groups)), problems_of(cluster, groups)


def test_the_validator_itself_refuses_two_control_planes() -> None:
    cluster, groups = make(control_plane_count=3)
    groups = [g for g in groups if g.name != "control-plane-us-east-1c"]
    assert any("1, 3 or 5" in p for p in problems_of(cluster, groups))


@pytest.mark.parametrize("count", [10**9, 10**30])
def test_huge_counts_are_refused_before_anything_is_built(count: int) -> None:
    import time

    started = time.monotonic()
    for key in ("control_plane_count", "node_count"):
        with pytest.raises(SpecInvalid):
            make(**{key: count})
    assert time.monotonic() - started < 1


def test_cidr_rules() -> None:
    cluster, groups = make()
    cluster.subnets[1].cidr = cluster.subnets[0].cidr
    cluster.subnets[2].cidr = "10.0.0.0/24"
    cluster.pod_cidr = "100.64.0.0/12"
    found = problems_of(cluster, groups)
    assert any("overlaps subnet us-east-1a" in p for p in found)
    assert any("spec.subnets[2].cidr: 10.0.0.0/24 is not inside spec.networkCIDR" in p for p in found)
    assert any("spec.podCIDR: 100.64.0.0/12 overlaps spec.serviceClusterIPRange" in p for p in found)


def test_instance_group_rules() -> None:
    cluster, groups = make()
    groups[-1].min_size, groups[-1].max_size = 5, 3
    groups[-1].subnets = ["us-east-1z"]
    groups[0].max_size = 2
    found = problems_of(cluster, groups)
    assert any("spec.maxSize: 3 is smaller than spec.minSize 5" in p for p in found)
    assert any("'us-east-1z' is not a subnet of the cluster" in p for p in found)
    assert any("minSize = maxSize = 1" in p for p in found)


def test_unknown_and_mistyped_fields_are_reported_with_paths() -> None:
    doc = cluster_to_dict(make()[0])
    doc["spec"]["networkCidr"] = "10.0.0.0/16"  # wrong case: kops spells it networkCIDR
    doc["spec"]["subnets"][0]["cidr"] = 42
    with pytest.raises(SpecInvalid) as err:
        cluster_from_dict(doc)
    assert "spec.networkCidr: unknown field" in err.value.problems
    assert "spec.subnets[0].cidr: must be a string, got an integer" in err.value.problems


def test_newer_api_version_is_refused_with_advice() -> None:
    doc = cluster_to_dict(make()[0])
    doc["apiVersion"] = "kopsy.io/v1beta1"
    with pytest.raises(SpecInvalid, match="upgrade kopsy"):
        cluster_from_dict(doc)


def test_documents_report_yaml_position() -> None:
    with pytest.raises(SpecInvalid, match=r"f.yaml: malformed YAML at line 2"):
        parse_documents("kind: Cluster\n  x: [\n", "f.yaml")


def test_versions() -> None:
    assert version_problem(f"{SUPPORTED_MINORS[-1]}.4") is None
    assert "not a Kubernetes version" in (version_problem("latest") or "")


@pytest.mark.parametrize(("labels", "taints", "expected"), [
    ({"node-role.kubernetes.io/worker": ""}, [], "in a namespace the kubelet may not set"),
    ({"k8s.io/team": "a"}, [], "in a namespace the kubelet may not set"),
    ({"example.com/pool": "has space"}, [], "is not a valid label value"),
    ({"example.com/pool": "x" * 64}, [], "is not a valid label value"),
    ({"bad key!": "a"}, [], "is not a valid label key"),
    ({}, ["dedicated=in fra:NoSchedule"], "is not a valid taint value"),
    ({}, ["a=b:NoSchedule", "a=c:NoSchedule"], "a key is given twice with the same effect"),
])
def test_node_labels_and_taints_the_kubelet_would_refuse_are_refused(labels: dict, taints: list, expected: str) -> None:
    cluster, groups = make()
    groups[-1].node_labels = labels
    groups[-1].taints = [t for t in (parse_taint(x) for x in taints) if t is not None]
    assert any(expected in p for p in problems_of(cluster, groups)), problems_of(cluster, groups)


def test_labels_the_kubelet_may_set_are_accepted() -> None:
    cluster, groups = make()
    groups[-1].node_labels = {"node.kubernetes.io/lifecycle": "spot", "topology.kubernetes.io/zone": "us-east-1a",
                              "example.com/pool": "general", "plain": ""}
    groups[-1].taints = [t for t in (parse_taint("a=b:NoSchedule"), parse_taint("a=b:NoExecute")) if t is not None]
    assert problems_of(cluster, groups) == []

"""The private topology in the spec: kops' subnet types and topology, what create makes of
``--topology private [--nat single] [--bastion]``, and what validation refuses (with paths)."""

from __future__ import annotations

import pytest

from kopsy.errors import SpecInvalid
from kopsy.spec.defaults import CreateOptions, new_cluster
from kopsy.spec.kops import convert_documents
from kopsy.spec.model import cluster_from_dict, cluster_to_dict, replace
from kopsy.spec.validation import validate_cluster

ZONES = ["us-east-1a", "us-east-1b"]


def _new(**kw: object) -> tuple:  # type: ignore[type-arg]
    return new_cluster(CreateOptions(name="p.example.com", zones=ZONES, **kw))  # type: ignore[arg-type]


def test_private_create_has_a_private_and_a_utility_subnet_per_zone() -> None:
    cluster, groups = _new(topology="private")
    validate_cluster(cluster, groups)
    assert [(s.name, s.type, s.cidr) for s in cluster.subnets] == [
        ("us-east-1a", "Private", "172.20.32.0/19"), ("us-east-1b", "Private", "172.20.64.0/19"),
        ("utility-us-east-1a", "Utility", "172.20.0.0/22"), ("utility-us-east-1b", "Utility", "172.20.4.0/22"),
    ]
    assert cluster.zones == ZONES
    assert {cluster.nat_subnet(s).name for s in cluster.subnets_of("Private")} == {"utility-us-east-1a", "utility-us-east-1b"}
    assert cluster_from_dict(cluster_to_dict(cluster)) == cluster  # round trip, topology included


def test_single_nat_routes_every_zone_through_the_first() -> None:
    cluster, _ = _new(topology="private", nat="single")
    assert {cluster.nat_subnet(s).name for s in cluster.subnets_of("Private")} == {"utility-us-east-1a"}


def test_bastion_group_lives_in_the_utility_subnets() -> None:
    cluster, groups = _new(topology="private", bastion=True)
    validate_cluster(cluster, groups)
    (bastion,) = [g for g in groups if g.role == "Bastion"]
    assert bastion.subnets == ["utility-us-east-1a", "utility-us-east-1b"]


def test_public_spec_yaml_is_unchanged() -> None:
    cluster, _ = _new()
    doc = cluster_to_dict(cluster)
    assert "topology" not in doc["spec"] and all("egress" not in s for s in doc["spec"]["subnets"])


@pytest.mark.parametrize("change, message", [
    (lambda c: replace(c, topology="public"), "spec.subnets[0].type: Private subnets need spec.topology private"),
    (lambda c: replace(c, subnets=[s for s in c.subnets if s.name != "utility-us-east-1b"]),
     "Private subnet 'us-east-1b' has no Utility subnet in zone us-east-1b"),
    (lambda c: replace(c, subnets=[replace(c.subnets[0], egress="us-east-1b"), *c.subnets[1:]]),
     "spec.subnets[0].egress: 'us-east-1b' is not a Utility subnet"),
    (lambda c: replace(c, topology="hybrid"), "spec.topology: 'hybrid' is not one of public, private"),
])
def test_validation_refuses_what_does_not_fit_the_topology(change, message: str) -> None:  # type: ignore[no-untyped-def]
    cluster, groups = _new(topology="private")
    with pytest.raises(SpecInvalid) as err:
        validate_cluster(change(cluster), groups)
    assert any(message in p for p in err.value.problems), err.value.problems


def test_a_node_group_in_a_utility_subnet_is_refused() -> None:
    cluster, groups = _new(topology="private")
    groups = [replace(g, subnets=["utility-us-east-1a"]) if g.name == "nodes" else g for g in groups]
    with pytest.raises(SpecInvalid, match="'utility-us-east-1a' is a Utility subnet; a Node group of a private cluster goes in Private"):
        validate_cluster(cluster, groups)


def test_node_labels_on_a_bastion_are_refused() -> None:
    cluster, groups = _new(topology="private", bastion=True)
    labelled = [replace(g, node_labels={"example.com/x": "y"}) if g.role == "Bastion" else g for g in groups]
    with pytest.raises(SpecInvalid, match="a Bastion is no Kubernetes node"):
        validate_cluster(cluster, labelled)


def test_a_bastion_needs_the_private_topology() -> None:
    with pytest.raises(SpecInvalid, match="--bastion: needs --topology private"):
        _new(bastion=True)
    _, private_groups = _new(topology="private", bastion=True)
    public, _ = _new()
    in_public_subnets = [replace(g, subnets=["us-east-1a"]) for g in private_groups]  # the bastion group among them
    with pytest.raises(SpecInvalid, match="a Bastion needs spec.topology private"):
        validate_cluster(public, in_public_subnets)


def _kops(subnets: list[dict], topology: dict) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "kops.k8s.io/v1alpha2", "kind": "Cluster", "metadata": {"name": "k.example.com"},
            "spec": {"kubernetesVersion": "1.33.2", "networkCIDR": "172.20.0.0/16", "subnets": subnets, "topology": topology}}


def test_kops_private_manifest_maps_onto_the_spec() -> None:
    doc = _kops([{"name": "us-east-1a", "zone": "us-east-1a", "cidr": "172.20.32.0/19", "type": "Private"},
                 {"name": "utility-us-east-1a", "zone": "us-east-1a", "cidr": "172.20.0.0/22", "type": "Utility"}],
                {"controlPlane": "private", "nodes": "private", "dns": {"type": "Public"}})
    (out,) = convert_documents([doc], "kops.yaml").documents
    assert out["spec"]["topology"] == {"controlPlane": "private", "nodes": "private"}
    assert [s["type"] for s in out["spec"]["subnets"]] == ["Private", "Utility"]
    assert cluster_from_dict(out).private


def test_kops_egress_to_an_existing_nat_is_refused_with_its_path() -> None:
    doc = _kops([{"name": "a", "zone": "us-east-1a", "cidr": "172.20.32.0/19", "type": "Private", "egress": "nat-0123456789abcdef0"}],
                {"masters": "private", "nodes": "private"})
    with pytest.raises(Exception, match=r"spec.subnets\[0\].egress"):
        convert_documents([doc], "kops.yaml")

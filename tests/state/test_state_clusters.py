"""ClusterStore: the cluster layout on both backends, and what a damaged store looks like to a user."""

from __future__ import annotations

import pytest

from kopsy.errors import ClusterExists, ClusterNotFound, ObjectExists, ObjectNotFound, StateStoreError, WriteConflict
from kopsy.spec.model import replace
from kopsy.state.clusters import ClusterStore
from state_support import sample_cluster, sample_groups

NAME = "demo.example.com"
PKI = {"pki/ca.crt": b"CERT", "pki/ca.key": b"KEY", "secrets/bootstrap-token": b"abcdef.0123456789abcdef"}


def test_round_trip(clusters: ClusterStore) -> None:
    cluster, groups = sample_cluster(), sample_groups()
    clusters.create_cluster(cluster, groups, PKI)
    assert clusters.list_clusters() == [NAME]
    got, etag = clusters.get_cluster(NAME)
    assert got == cluster and etag
    listed = clusters.list_instance_groups(NAME)
    assert [ig for ig, _ in listed] == sorted(groups, key=lambda g: g.name)
    ig, _ = clusters.get_instance_group(NAME, "nodes")
    assert ig == groups[1]
    assert clusters.get_object(NAME, "pki/ca.crt") == b"CERT"
    assert sorted(clusters.store.list(f"{NAME}/")) == sorted(
        [f"{NAME}/config", f"{NAME}/instancegroup/control-plane-us-east-1a", f"{NAME}/instancegroup/nodes",
         f"{NAME}/cache/reads.json"]
        + [f"{NAME}/{k}" for k in PKI]
    )
    text = clusters.store.get(f"{NAME}/config").data.decode()
    assert text.startswith("apiVersion: kopsy.io/v1alpha1\nkind: Cluster\n")


def test_create_twice_is_refused_and_changes_nothing(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    before = {k: clusters.store.get(k).data for k in clusters.store.list()}
    changed = replace(sample_cluster(), kubernetes_version="1.32.0")
    with pytest.raises(ClusterExists):
        clusters.create_cluster(changed, sample_groups(), {"pki/ca.crt": b"OTHER"})
    assert {k: clusters.store.get(k).data for k in clusters.store.list()} == before


def test_failed_create_removes_what_it_wrote(clusters: ClusterStore) -> None:
    clusters.store.create(f"{NAME}/pki/ca.key", b"leftover")
    with pytest.raises(StateStoreError) as err:
        clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    assert f"{NAME}/pki/ca.key" in str(err.value) and "left over" in str(err.value)
    assert clusters.store.list() == [f"{NAME}/pki/ca.key"]
    assert clusters.list_clusters() == []


def test_unknown_cluster_lists_the_known_ones(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster("a.example.com"), sample_groups("a.example.com"), {})
    clusters.create_cluster(sample_cluster("b.example.com"), [], {})
    with pytest.raises(ClusterNotFound) as err:
        clusters.get_cluster("nope.example.com")
    assert str(err.value) == (
        'cluster "nope.example.com" not found in the state store; clusters in this store: a.example.com, b.example.com'
    )
    with pytest.raises(ClusterNotFound):
        clusters.list_instance_groups("nope.example.com")
    with pytest.raises(ClusterNotFound):
        clusters.create_instance_group(sample_groups("nope.example.com")[0])


def test_replace_cluster_detects_concurrent_edit(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), {})
    c, etag = clusters.get_cluster(NAME)
    new_etag = clusters.replace_cluster(replace(c, kubernetes_version="1.33.3"), etag)
    with pytest.raises(WriteConflict) as err:
        clusters.replace_cluster(replace(c, kubernetes_version="1.32.9"), etag)
    assert f'cluster "{NAME}" was changed by someone else' in str(err.value)
    got, got_etag = clusters.get_cluster(NAME)
    assert (got.kubernetes_version, got_etag) == ("1.33.3", new_etag)


def test_instance_group_lifecycle(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups()[:1], {})
    extra = replace(sample_groups()[1], name="spot")
    clusters.create_instance_group(extra)
    with pytest.raises(ObjectExists) as err:
        clusters.create_instance_group(extra)
    assert 'instance group "spot" already exists' in str(err.value)
    ig, etag = clusters.get_instance_group(NAME, "spot")
    clusters.replace_instance_group(replace(ig, max_size=9), etag)
    with pytest.raises(WriteConflict):
        clusters.replace_instance_group(replace(ig, max_size=7), etag)
    assert clusters.get_instance_group(NAME, "spot")[0].max_size == 9
    clusters.delete_instance_group(NAME, "spot")
    with pytest.raises(ObjectNotFound) as err2:
        clusters.get_instance_group(NAME, "spot")
    assert str(err2.value) == f'instance group "spot" not found in cluster "{NAME}"; instance groups: control-plane-us-east-1a'
    with pytest.raises(ObjectNotFound):
        clusters.delete_instance_group(NAME, "spot")


def test_deleting_a_group_records_the_removal_and_recreating_it_clears_the_record(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    spot = replace(sample_groups()[1], name="spot")
    clusters.create_instance_group(spot)
    assert clusters.removed_instance_groups(NAME) == set()
    assert clusters.delete_instance_group(NAME, "spot", role="Node") is True
    assert clusters.removed_instance_groups(NAME) == {"spot"}
    assert f"{NAME}/removed/instancegroup/spot" in clusters.store.list(NAME + "/")
    # a missing object is never consent by itself; asking explicitly records it anyway
    assert clusters.delete_instance_group(NAME, "gone", missing_ok=True) is False
    assert clusters.removed_instance_groups(NAME) == {"spot", "gone"}
    clusters.create_instance_group(spot)
    assert clusters.removed_instance_groups(NAME) == {"gone"}
    clusters.forget_removed(NAME, ["gone"])
    assert clusters.removed_instance_groups(NAME) == set()
    assert [ig.name for ig, _ in clusters.list_instance_groups(NAME)] == ["control-plane-us-east-1a", "nodes", "spot"]


def test_delete_cluster_state_removes_everything(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    clusters.create_cluster(sample_cluster("keep.example.com"), [], {})
    clusters.delete_cluster_state(NAME)
    assert clusters.list_clusters() == ["keep.example.com"]
    assert clusters.store.list(f"{NAME}/") == []
    with pytest.raises(ClusterNotFound):
        clusters.delete_cluster_state(NAME)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated upload
        lambda data: b"apiVersion: kopsy.io/v1alpha1\nkind: Cluster\nmetadata: {name: demo",  # cut mid-flow
        lambda data: b"\xff\xfe not utf-8",
        lambda data: b"- just\n- a list\n",
    ],
)
def test_damaged_config_names_the_key(clusters: ClusterStore, damage) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), {})
    key = f"{NAME}/config"
    obj = clusters.store.get(key)
    clusters.store.replace(key, damage(obj.data), obj.etag)
    with pytest.raises(StateStoreError) as err:
        clusters.get_cluster(NAME)
    assert clusters.store.url_for(key) in str(err.value)
    assert "\n" not in str(err.value)


def test_damaged_instance_group_names_the_key(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), {})
    key = f"{NAME}/instancegroup/nodes"
    obj = clusters.store.get(key)
    clusters.store.replace(key, obj.data[: len(obj.data) - 20], obj.etag)
    with pytest.raises(StateStoreError) as err:
        clusters.list_instance_groups(NAME)
    assert clusters.store.url_for(key) in str(err.value)


def test_names_cannot_escape_the_cluster(clusters: ClusterStore) -> None:
    with pytest.raises(StateStoreError):
        clusters.get_cluster("../etc")
    with pytest.raises(StateStoreError):
        clusters.get_object(NAME, "../other/pki/ca.key")

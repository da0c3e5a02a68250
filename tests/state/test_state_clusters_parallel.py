"""ClusterStore reads a cluster's groups and deletes its objects in parallel, yet still removes
``config`` last: a delete that fails half-way leaves the cluster listed, so a re-run finishes it.

Parallelism is shown without timing: the wrapped store makes each call wait at a barrier that
only opens when several calls are inside at once (a sequential caller breaks the barrier)."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from kopsy.errors import StateStoreError
from kopsy.state.base import ObjectStore, StoredObject
from kopsy.state.clusters import ClusterStore
from state_support import sample_cluster, sample_groups

NAME = "demo.example.com"
PKI = {f"pki/obj{i}": b"x" for i in range(12)}


class Overlapping(ObjectStore):
    """Delegates to ``inner``; ``get``/``delete`` of watched keys meet at a barrier of ``parties``."""

    def __init__(self, inner: ObjectStore, parties: int, watch: str) -> None:
        self.inner = inner
        self.url = inner.url
        self.barrier = threading.Barrier(parties, timeout=10)
        self.watch = watch
        self.deleted: list[str] = []
        self.fail: str | None = None
        self._lock = threading.Lock()

    def _meet(self, key: str) -> None:
        if key.startswith(self.watch) and not self.barrier.broken:
            try:
                self.barrier.wait()
            except threading.BrokenBarrierError:
                pass  # more calls than parties: the later ones need not meet

    def get(self, key: str) -> StoredObject:
        self._meet(key)
        return self.inner.get(key)

    def create(self, key: str, data: bytes) -> str:
        return self.inner.create(key, data)

    def replace(self, key: str, data: bytes, etag: str) -> str:
        return self.inner.replace(key, data, etag)

    def delete(self, key: str, etag: str | None = None) -> None:
        self._meet(key)
        if key == self.fail:
            raise StateStoreError(f"cannot delete {key}")
        self.inner.delete(key, etag)
        with self._lock:
            self.deleted.append(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def url_for(self, key: str) -> str:
        return self.inner.url_for(key)


def test_delete_is_parallel_and_removes_config_last(store: ObjectStore) -> None:
    ClusterStore(store).create_cluster(sample_cluster(), sample_groups(), PKI)
    wrapped = Overlapping(store, parties=4, watch=f"{NAME}/pki/")
    ClusterStore(wrapped).delete_cluster_state(NAME)
    assert not wrapped.barrier.broken, "the deletes did not overlap"
    assert wrapped.deleted[-1] == f"{NAME}/config"
    assert store.list(f"{NAME}/") == []


def test_a_failed_delete_keeps_config_so_a_rerun_finishes(store: ObjectStore) -> None:
    ClusterStore(store).create_cluster(sample_cluster(), sample_groups(), PKI)
    wrapped = Overlapping(store, parties=1, watch="-")
    wrapped.fail = f"{NAME}/pki/obj3"
    with pytest.raises(StateStoreError):
        ClusterStore(wrapped).delete_cluster_state(NAME)
    assert f"{NAME}/config" in store.list(f"{NAME}/") and ClusterStore(store).list_clusters() == [NAME]
    assert set(wrapped.deleted) >= {f"{NAME}/pki/obj{i}" for i in range(12) if i != 3}, "the others still went"
    ClusterStore(store).delete_cluster_state(NAME)
    assert store.list(f"{NAME}/") == []


def test_instance_groups_are_read_in_parallel(store: ObjectStore) -> None:
    groups = sample_groups()
    ClusterStore(store).create_cluster(sample_cluster(), groups, {})
    wrapped = Overlapping(store, parties=len(groups), watch=f"{NAME}/instancegroup/")
    listed = ClusterStore(wrapped).list_instance_groups(NAME)
    assert not wrapped.barrier.broken, "the reads did not overlap"
    assert [ig for ig, _ in listed] == sorted(groups, key=lambda g: g.name)


def test_two_dozen_instance_groups_are_read_in_one_round_trip(store: ObjectStore) -> None:
    """An xl cluster's groups (23 of them) all at once: read 16 at a time they cost the first
    update after ``create -f`` a second round trip."""
    node = next(g for g in sample_groups() if g.role == "Node")
    groups = [dataclasses.replace(node, name=f"nodes-{i:02d}") for i in range(24)]
    ClusterStore(store).create_cluster(sample_cluster(), groups, {})
    wrapped = Overlapping(store, parties=len(groups), watch=f"{NAME}/instancegroup/")
    assert len(ClusterStore(wrapped).list_instance_groups(NAME)) == 24
    assert not wrapped.barrier.broken, "some reads waited for others to finish"


@pytest.mark.parametrize("store_url", ["s3"], indirect=True)
def test_s3_removes_a_clusters_objects_in_one_batch_call(store: ObjectStore) -> None:
    """On S3 the objects other than config go in one DeleteObjects (per 1000 keys), not one
    DeleteObject each; config follows in its own call, last."""
    from kopsy.state.s3 import S3Store

    assert isinstance(store, S3Store)
    ClusterStore(store).create_cluster(sample_cluster(), sample_groups(), PKI)
    calls: list[str] = []
    store.clients.on_call(lambda service, operation: calls.append(operation))
    ClusterStore(store).delete_cluster_state(NAME)
    assert store.list(f"{NAME}/") == []
    deletes = [op for op in calls if op.startswith("Delete")]
    assert deletes == ["DeleteObjects", "DeleteObject"], calls

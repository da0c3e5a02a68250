"""One listing of a cluster settles which published objects are current (``ClusterStore.listing``
and ``differs``), on both backends: ETags that are a function of the bytes (S3's MD5 for a single
PutObject, the file store's sha256) need no read, anything else is read and compared."""

from __future__ import annotations

import pytest

from kopsy.state.base import ObjectStore, StoredObject
from kopsy.state.clusters import ClusterStore
from state_support import sample_cluster, sample_groups

NAME = "demo.example.com"
PKI = {"pki/ca.crt": b"CERT", "pki/ca.key": b"KEY"}


class CountingReads(ObjectStore):
    """Delegates to ``inner`` and records the keys ``get`` was asked for."""

    def __init__(self, inner: ObjectStore, etags_from_bytes: bool = True) -> None:
        self.inner, self.url, self.reads = inner, inner.url, []  # type: ignore[var-annotated]
        self.etags_from_bytes = etags_from_bytes

    def get(self, key: str) -> StoredObject:
        self.reads.append(key)
        return self.inner.get(key)

    def create(self, key: str, data: bytes) -> str:
        return self.inner.create(key, data)

    def replace(self, key: str, data: bytes, etag: str) -> str:
        return self.inner.replace(key, data, etag)

    def delete(self, key: str, etag: str | None = None) -> None:
        self.inner.delete(key, etag)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)

    def list_etags(self, prefix: str = "") -> dict[str, str]:
        return self.inner.list_etags(prefix)

    def etag_for(self, data: bytes) -> str | None:
        return self.inner.etag_for(data) if self.etags_from_bytes else None


def test_the_listing_names_groups_removals_and_etags(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    clusters.delete_instance_group(NAME, "nodes")
    listing = clusters.listing(NAME)
    assert clusters.removed_instance_groups(NAME, listing) == clusters.removed_instance_groups(NAME) == {"nodes"}
    assert [ig.name for ig, _ in clusters.list_instance_groups(NAME, listing)] == ["control-plane-us-east-1a"]
    assert listing.etags["pki/ca.crt"] == clusters.read_object(NAME, "pki/ca.crt").etag  # type: ignore[union-attr]


def test_a_current_object_is_settled_by_its_listed_etag_without_a_read(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    clusters.write_object(NAME, "addons/a.yaml", b"kind: A\n", None)
    counting = CountingReads(clusters.store)
    wrapped = ClusterStore(counting)
    listing = wrapped.listing(NAME)
    assert wrapped.differs(NAME, "addons/a.yaml", b"kind: A\n", listing) == (False, listing.etags["addons/a.yaml"])
    assert counting.reads == []
    stale, etag = wrapped.differs(NAME, "addons/a.yaml", b"kind: B\n", listing)
    assert stale and etag == listing.etags["addons/a.yaml"]  # the version a conditional write replaces
    assert wrapped.differs(NAME, "addons/missing.yaml", b"x", listing) == (True, None)
    wrapped.write_object(NAME, "addons/a.yaml", b"kind: B\n", etag)
    assert clusters.get_object(NAME, "addons/a.yaml") == b"kind: B\n"


@pytest.mark.parametrize("same", [True, False])
def test_where_etags_say_nothing_about_the_bytes_the_object_is_read(clusters: ClusterStore, same: bool) -> None:
    """S3 under SSE-KMS (or a multipart upload): the listed ETag is no MD5, so the bytes decide."""
    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    clusters.write_object(NAME, "bootstrap/m.py", b"print(1)\n", None)
    counting = CountingReads(clusters.store, etags_from_bytes=False)
    wrapped = ClusterStore(counting)
    listing = wrapped.listing(NAME)
    stale, etag = wrapped.differs(NAME, "bootstrap/m.py", b"print(1)\n" if same else b"print(2)\n", listing)
    assert (stale, etag) == (not same, listing.etags["bootstrap/m.py"])
    assert counting.reads == [f"{NAME}/bootstrap/m.py"]


def _cached_reads(clusters: ClusterStore) -> tuple[ClusterStore, CountingReads]:
    counting = CountingReads(clusters.store)
    return ClusterStore(counting), counting


def _read_spec(store: ClusterStore) -> tuple[object, list[object]]:
    listing = store.listing(NAME, cached=True)
    cluster, _ = store.get_cluster(NAME, listing)
    groups = [ig for ig, _ in store.list_instance_groups(NAME, listing)]
    store.save_reads(listing)
    return cluster, groups


def test_the_read_cache_serves_the_spec_in_one_read_and_follows_an_edit(clusters: ClusterStore) -> None:
    from kopsy.spec.model import replace
    from kopsy.state.clusters import READ_CACHE

    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    wrapped, counting = _cached_reads(clusters)
    first = _read_spec(wrapped)  # no cache yet: every object is read, then kept
    assert f"{NAME}/{READ_CACHE}" in clusters.store.list(f"{NAME}/")
    counting.reads.clear()
    assert _read_spec(wrapped) == first
    assert counting.reads == [f"{NAME}/{READ_CACHE}"]
    nodes, etag = clusters.get_instance_group(NAME, "nodes")
    clusters.replace_instance_group(replace(nodes, max_size=nodes.max_size + 5), etag)  # kopsy edit
    counting.reads.clear()
    _, groups = _read_spec(wrapped)
    assert [g.max_size for g in groups if g.name == "nodes"] == [nodes.max_size + 5]  # type: ignore[attr-defined]
    assert counting.reads == [f"{NAME}/{READ_CACHE}", f"{NAME}/instancegroup/nodes"]
    counting.reads.clear()
    _read_spec(wrapped)
    assert counting.reads == [f"{NAME}/{READ_CACHE}"]  # the cache took the edit in


@pytest.mark.parametrize("cache", [b"{", b"[]", b'{"config": "not base64!"}', b'{"config": "a2luZDogQ2x1c3Rlcgo="}'])
def test_a_damaged_or_forged_cache_is_only_ignored(clusters: ClusterStore, cache: bytes) -> None:
    """The last one holds other bytes for ``config`` than the store: their ETag differs from the listed one."""
    from kopsy.state.clusters import READ_CACHE

    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    clusters.write_object(NAME, READ_CACHE, cache, clusters.read_object(NAME, READ_CACHE).etag)  # type: ignore[union-attr]
    wrapped, counting = _cached_reads(clusters)
    cluster, _ = _read_spec(wrapped)
    assert cluster == sample_cluster()
    assert f"{NAME}/config" in counting.reads


def test_the_read_cache_never_holds_a_secret(clusters: ClusterStore) -> None:
    import base64
    import json

    from kopsy.state.clusters import READ_CACHE

    clusters.create_cluster(sample_cluster(), sample_groups(), PKI)
    clusters.store.delete(f"{NAME}/{READ_CACHE}")
    listing = clusters.listing(NAME, cached=True)
    for rel in ("pki/ca.key", "pki/ca.crt", "config"):
        clusters.read_object(NAME, rel, listing)
    clusters.save_reads(listing)
    doc = json.loads(clusters.get_object(NAME, READ_CACHE))
    assert sorted(doc) == ["config"]
    assert b"KEY" not in base64.b64decode(doc["config"])
    # create's own copy holds the spec only, never the PKI it writes beside it
    fresh = "other.example.com"
    clusters.create_cluster(sample_cluster(fresh), sample_groups(fresh), PKI)
    created = json.loads(clusters.get_object(fresh, READ_CACHE))
    assert sorted(created) == ["config", "instancegroup/control-plane-us-east-1a", "instancegroup/nodes"]

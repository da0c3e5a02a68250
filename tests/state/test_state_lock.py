"""The cluster lease lock on both backends: held by another process, expiry, force-unlock, renewal."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from kopsy.errors import LockHeld
from kopsy.state.clusters import ClusterStore, format_time, parse_time
from state_support import sample_cluster

NAME = "demo.example.com"
LOCK = f"{NAME}/lock"


def ghost_lock(clusters: ClusterStore, expires_in: float) -> None:
    """A lock written by some other operator on another machine."""
    now = datetime.now(timezone.utc)
    doc = {
        "holder": "alice@laptop",
        "host": "laptop",
        "pid": 4242,
        "operation": "update cluster",
        "acquired": format_time(now - timedelta(minutes=1)),
        "expires": format_time(now + timedelta(seconds=expires_in)),
    }
    clusters.store.create(LOCK, json.dumps(doc).encode())


def test_lock_object_format_and_release(clusters: ClusterStore) -> None:
    clusters.create_cluster(sample_cluster(), [], {})
    with clusters.lock(NAME, "update cluster") as lease:
        doc = json.loads(clusters.store.get(LOCK).data)
        assert set(doc) == {"holder", "host", "pid", "operation", "acquired", "expires"}
        assert doc["pid"] == os.getpid() and doc["operation"] == "update cluster"
        assert doc["holder"].endswith("@" + doc["host"])
        assert doc["expires"].endswith("Z")
        lease_len = parse_time(doc["expires"]) - parse_time(doc["acquired"])
        assert lease_len == timedelta(minutes=10)
        holder = clusters.lock_holder(NAME)
        assert holder is not None and holder["expired"] is False and holder["pid"] == os.getpid()
        with clusters.lock(NAME, "nested helper") as inner:  # re-entrant in one ClusterStore
            assert inner is lease
        assert clusters.store.list(f"{NAME}/") == [f"{NAME}/cache/reads.json", f"{NAME}/config", LOCK]
    assert clusters.lock_holder(NAME) is None
    assert not lease.lost


def test_lock_held_by_another_process(clusters: ClusterStore, store_url: str, procs) -> None:
    other = procs("hold-lock", store_url, NAME, "delete cluster")
    answer = other.read()
    assert answer["locked"] is True
    with pytest.raises(LockHeld) as err:
        with clusters.lock(NAME, "update cluster"):
            pass
    assert err.value.holder["pid"] == answer["pid"]
    assert err.value.holder["operation"] == "delete cluster"
    message = str(err.value)
    assert f'cluster "{NAME}" is locked by ' in message and "running delete cluster" in message
    assert "--force-unlock" in message
    assert other.finish() == 0  # the holder releases on its way out
    with clusters.lock(NAME, "update cluster"):
        assert clusters.lock_holder(NAME)["pid"] == os.getpid()  # type: ignore[index]


def test_expired_lock_is_taken_over(clusters: ClusterStore) -> None:
    ghost_lock(clusters, expires_in=-5)
    assert clusters.lock_holder(NAME)["expired"] is True  # type: ignore[index]
    with clusters.lock(NAME, "update cluster"):
        assert clusters.lock_holder(NAME)["pid"] == os.getpid()  # type: ignore[index]
    assert clusters.lock_holder(NAME) is None


def test_unexpired_lock_needs_force_unlock(clusters: ClusterStore) -> None:
    ghost_lock(clusters, expires_in=600)
    with pytest.raises(LockHeld) as err:
        with clusters.lock(NAME, "update cluster"):
            pass
    assert "locked by alice@laptop on laptop running update cluster" in str(err.value)
    with clusters.lock(NAME, "update cluster", force_unlock=True):
        assert clusters.lock_holder(NAME)["holder"] != "alice@laptop"  # type: ignore[index]


def test_release_never_removes_someone_elses_lock(store) -> None:
    first, second = ClusterStore(store), ClusterStore(store)
    with first.lock(NAME, "update cluster") as lease:
        with second.lock(NAME, "delete cluster", force_unlock=True):
            pass  # second is released here; take it again and keep it while first exits
        ctx = second.lock(NAME, "delete cluster")
        ctx.__enter__()
    assert lease.lost
    holder = first.lock_holder(NAME)
    assert holder is not None and holder["operation"] == "delete cluster"
    ctx.__exit__(None, None, None)
    assert first.lock_holder(NAME) is None


def test_renewal_keeps_the_lock_past_its_first_lease(store) -> None:
    mine, theirs = ClusterStore(store), ClusterStore(store)
    lease_seconds = 1.2  # renewed every 0.4 s: slack for a loaded machine
    with mine.lock(NAME, "rolling update", lease_seconds=lease_seconds) as lease:
        first_expiry = parse_time(lease.doc["expires"])
        deadline = time.monotonic() + 20
        while datetime.now(timezone.utc) < first_expiry + timedelta(seconds=lease_seconds) or lease.renewals < 2:
            assert time.monotonic() < deadline, "lease was not renewed"
            time.sleep(0.02)
        assert not lease.lost
        assert parse_time(json.loads(store.get(LOCK).data)["expires"]) > datetime.now(timezone.utc)
        with pytest.raises(LockHeld):
            with theirs.lock(NAME, "update cluster"):
                pass
    assert store.list() == []

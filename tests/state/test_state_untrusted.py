"""The store is untrusted input (issue 19): foreign keys are skipped with a warning and never make
a command fail halfway; a file:// store's symlinks, FIFOs, devices and folders are refused, never
followed or waited on; folders kopsy creates are 0700 whatever the umask."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from kopsy.errors import StateStoreError
from kopsy.state import ObjectStore, open_store
from kopsy.state.clusters import ClusterStore
from kopsy.state.file import FileStore
from state_support import sample_cluster, sample_groups

NAME = "demo.example.com"
OBJECTS = {"pki/ca.crt": b"CERT", "ssh/public/admin": b"ssh-ed25519 AAAA x\n"}


def raw_put(store: ObjectStore, key: str, data: bytes) -> None:
    """Write a key the way a stray tool would: past kopsy's key checks."""
    if isinstance(store, FileStore):
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        full = f"{store.prefix}/{key}" if store.prefix else key  # type: ignore[attr-defined]
        store.s3.put_object(Bucket=store.bucket, Key=full, Body=data)  # type: ignore[attr-defined]


@pytest.fixture
def warned(store: ObjectStore) -> tuple[ClusterStore, list[str]]:
    seen: list[str] = []
    return ClusterStore(store, on_warning=seen.append), seen


@pytest.mark.parametrize("stray", ["Stray Folder/config", ".hidden/config", "tab\there/config", "pipe|name/config"])
def test_a_stray_config_at_the_root_breaks_no_cluster(warned: tuple[ClusterStore, list[str]], stray: str) -> None:
    clusters, seen = warned
    clusters.create_cluster(sample_cluster(), sample_groups(), OBJECTS)
    raw_put(clusters.store, stray, b"not yaml: [")
    assert clusters.list_clusters() == [NAME]
    if not stray.startswith("."):  # hidden names are the file store's own bookkeeping: not even listed
        assert len(seen) == 1 and "not a kopsy key" in seen[0] and "\n" not in seen[0] and "\t" not in seen[0], seen
    assert clusters.get_cluster(NAME)[0].name == NAME


def test_a_stray_group_key_is_skipped_and_delete_does_not_fail_halfway(warned: tuple[ClusterStore, list[str]]) -> None:
    clusters, seen = warned
    clusters.create_cluster(sample_cluster(), sample_groups(), OBJECTS)
    raw_put(clusters.store, f"{NAME}/instancegroup/nodes copy", b"garbage")
    assert [ig.name for ig, _ in clusters.list_instance_groups(NAME)] == ["control-plane-us-east-1a", "nodes"]
    assert any("nodes copy" in w for w in seen), seen
    clusters.delete_cluster_state(NAME)
    assert clusters.list_clusters() == []
    assert clusters.store.list(f"{NAME}/") == [f"{NAME}/instancegroup/nodes copy"], "the foreign key is left in place"
    assert any("left in place" in w for w in seen), seen


# --- file:// objects that are not regular files -----------------------------------------------


@pytest.fixture
def fstore(tmp_path: Path) -> tuple[ClusterStore, Path]:
    root = tmp_path / "state"
    clusters = ClusterStore(open_store(f"file://{root}"))
    clusters.create_cluster(sample_cluster(), sample_groups(), OBJECTS)
    return clusters, root


def test_an_object_that_is_a_symlink_leading_outside_is_refused(fstore: tuple[ClusterStore, Path], tmp_path: Path) -> None:
    clusters, root = fstore
    secret = tmp_path / "outside.txt"
    secret.write_text("ssh-ed25519 AAAA outside\n")
    target = root / NAME / "ssh" / "public" / "admin"
    target.unlink()
    target.symlink_to(secret)
    with pytest.raises(StateStoreError, match="is a symbolic link, not a regular file"):
        clusters.get_object(NAME, "ssh/public/admin")


def test_a_folder_on_the_path_that_links_outside_is_refused_for_reads_and_writes(fstore: tuple[ClusterStore, Path], tmp_path: Path) -> None:
    clusters, root = fstore
    outside = tmp_path / "elsewhere"
    (outside / "public").mkdir(parents=True)
    (outside / "public" / "admin").write_text("ssh-ed25519 AAAA outside\n")
    import shutil

    shutil.rmtree(root / NAME / "ssh")
    (root / NAME / "ssh").symlink_to(outside)
    with pytest.raises(StateStoreError, match="leading outside the store"):
        clusters.get_object(NAME, "ssh/public/admin")
    with pytest.raises(StateStoreError, match="leading outside the store"):
        clusters.store.create(f"{NAME}/ssh/public/other", b"x")
    assert sorted(p.name for p in (outside / "public").iterdir()) == ["admin"]


def test_a_fifo_object_is_refused_at_once(fstore: tuple[ClusterStore, Path]) -> None:
    clusters, root = fstore
    path = root / NAME / "pki" / "ca.crt"
    path.unlink()
    os.mkfifo(path)
    started = time.monotonic()
    with pytest.raises(StateStoreError, match="FIFO"):
        clusters.get_object(NAME, "pki/ca.crt")
    assert time.monotonic() - started < 2


def test_a_folder_in_place_of_an_object_is_refused(fstore: tuple[ClusterStore, Path]) -> None:
    clusters, root = fstore
    path = root / NAME / "config"
    path.unlink()
    path.mkdir()
    (path / "x").write_text("y")
    with pytest.raises(StateStoreError, match="is a folder, not a regular file"):
        clusters.get_cluster(NAME)


def test_an_oversized_object_is_refused_without_reading_it_all(fstore: tuple[ClusterStore, Path]) -> None:
    clusters, root = fstore
    path = root / NAME / "instancegroup" / "nodes"
    with open(path, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: 64 MiB that costs nothing on disk
    with pytest.raises(StateStoreError, match="more than a state-store object may be"):
        clusters.get_instance_group(NAME, "nodes")


# --- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_folders_the_store_creates_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        root = tmp_path / "deep" / "state"
        clusters = ClusterStore(open_store(f"file://{root}"))
        clusters.create_cluster(sample_cluster(), sample_groups(), OBJECTS)
    finally:
        os.umask(old)
    for d in (tmp_path / "deep", root, root / NAME, root / NAME / "ssh", root / NAME / "ssh" / "public"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, (d, oct(d.stat().st_mode))

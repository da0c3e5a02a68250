"""ObjectStore behaviour, identical for the file and S3 backends (see conftest ``store_url``)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from kopsy.errors import ObjectExists, ObjectNotFound, StateStoreError, WriteConflict
from kopsy.state import ObjectStore, open_store
from state_support import point_at_moto


def test_create_get_list_delete(store: ObjectStore) -> None:
    etag = store.create("demo/config", b"one")
    store.create("demo/instancegroup/nodes", b"ig")
    store.create("other/config", b"x")
    got = store.get("demo/config")
    assert (got.data, got.etag) == (b"one", etag)
    assert store.list() == ["demo/config", "demo/instancegroup/nodes", "other/config"]
    assert store.list("demo/") == ["demo/config", "demo/instancegroup/nodes"]
    assert store.list("demo/instancegroup/") == ["demo/instancegroup/nodes"]
    store.delete("demo/config")
    store.delete("demo/config")  # deleting a missing object is not an error
    with pytest.raises(ObjectNotFound) as err:
        store.get("demo/config")
    assert store.url_for("demo/config") in str(err.value)
    assert store.list("demo/") == ["demo/instancegroup/nodes"]


def test_create_never_overwrites(store: ObjectStore) -> None:
    store.create("demo/config", b"first")
    with pytest.raises(ObjectExists) as err:
        store.create("demo/config", b"second")
    assert "already exists" in str(err.value)
    assert store.get("demo/config").data == b"first"


def test_replace_needs_current_etag(store: ObjectStore) -> None:
    etag1 = store.create("demo/config", b"v1")
    etag2 = store.replace("demo/config", b"v2", etag1)
    assert etag2 != etag1
    with pytest.raises(WriteConflict):
        store.replace("demo/config", b"stale", etag1)
    assert store.get("demo/config").data == b"v2"
    with pytest.raises(ObjectNotFound):
        store.replace("demo/missing", b"x", etag1)


def test_conditional_delete(store: ObjectStore) -> None:
    etag1 = store.create("demo/lock", b"mine")
    etag2 = store.replace("demo/lock", b"theirs", etag1)
    with pytest.raises(WriteConflict):
        store.delete("demo/lock", etag=etag1)
    assert store.get("demo/lock").data == b"theirs"
    store.delete("demo/lock", etag=etag2)
    assert store.list() == []
    store.delete("demo/lock", etag=etag2)  # already gone: fine


def test_bad_keys_are_refused(store: ObjectStore) -> None:
    for key in ["../escape", "demo/../../x", "/abs", "demo//x", "demo/.kopsy-tmp-1", ""]:
        with pytest.raises(StateStoreError):
            store.create(key, b"x")


def test_two_processes_racing_replace_exactly_one_wins(store: ObjectStore, store_url: str, procs, tmp_path: Path) -> None:
    etag = store.create("demo/config", b"v1")
    go = tmp_path / "go"
    racers = [procs("race-replace", store_url, "demo/config", etag, str(go), f"writer-{i}") for i in range(2)]
    for r in racers:
        assert r.read() == {"ready": True}
    go.touch()
    results = sorted(r.read()["result"] for r in racers)
    for r in racers:
        assert r.finish() == 0
    assert results == ["conflict", "won"]
    assert store.get("demo/config").data in (b"writer-0", b"writer-1")


def test_file_store_objects_are_private(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/state")
    store.create("demo/pki/ca.key", b"secret")
    path = tmp_path / "state" / "demo" / "pki" / "ca.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["ca.key"]  # no temp files left behind


@pytest.mark.parametrize(
    "url",
    ["", "bucket", "/abs/path", "relative/path", "http://x/y", "file://relative/path", "s3://", "s3://Bad_Bucket",
     "s3://ok-bucket/../x"],
)
def test_bad_urls_say_the_accepted_forms(url: str) -> None:
    with pytest.raises(StateStoreError) as err:
        open_store(url)
    assert "s3://BUCKET[/PREFIX]" in str(err.value) or "invalid state-store key" in str(err.value)


def test_urls_are_normalised(tmp_path: Path) -> None:
    assert open_store(f"file://{tmp_path}/s/").url == f"file://{tmp_path}/s"
    assert open_store(f"file://{tmp_path}/s").url_for("demo/config") == f"file://{tmp_path}/s/demo/config"


def test_s3_urls_are_normalised(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    point_at_moto(monkeypatch, aws_env)
    assert open_store("s3://kopsy-state/").url == "s3://kopsy-state"
    assert open_store("s3://kopsy-state/a/b/").url == "s3://kopsy-state/a/b"

"""``kopsy get etcd-backups``: the snapshots the control planes wrote, newest first, from the store."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.e2e  # the real kopsy executable, file:// store and S3 in moto server

NAME = "demo.example.com"


def _put(env: dict[str, str], boto, rel: str, body: bytes) -> None:
    url = urlparse(env["KOPSY_STATE_STORE"])
    if url.scheme == "file":
        path = Path(url.path) / NAME / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    else:
        boto("s3").put_object(Bucket=url.netloc, Key=f"{url.path.strip('/') + '/' if url.path.strip('/') else ''}{NAME}/{rel}", Body=body)


def _snapshot(env, boto, ts: str, revision: int) -> None:
    meta = {"timestamp": ts, "revision": revision, "members": 3, "kubernetesVersion": "1.35.0", "size": 2048, "sha256": "0" * 64}
    _put(env, boto, f"backups/etcd/{ts}/snapshot.db", b"x")
    _put(env, boto, f"backups/etcd/{ts}/meta.json", json.dumps(meta).encode())


def test_get_etcd_backups_lists_newest_first(run_kopsy, store_env, ssh_keypair, boto) -> None:
    _, pub = ssh_keypair
    r = run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a", "--ssh-public-key", str(pub)], store_env)
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["get", "etcd-backups", NAME], store_env)
    assert r.returncode == 0 and "No etcd snapshots" in r.stdout
    _snapshot(store_env, boto, "2026-12-01T10:00:00Z", 100)
    _snapshot(store_env, boto, "2026-12-01T11:00:00Z", 150)
    _put(store_env, boto, "backups/etcd/2026-12-01T12:00:00Z/snapshot.db", b"half written")  # no metadata yet
    _put(store_env, boto, "backups/etcd/first-boot.json", b"{}")
    r = run_kopsy(["get", "etcd-backups", NAME], store_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TIMESTAMP", "AGE", "SIZE", "REVISION", "K8S-VERSION"]
    assert [ln.split()[0] for ln in lines[1:]] == ["2026-12-01T11:00:00Z", "2026-12-01T10:00:00Z"]
    assert lines[1].split()[2:] == ["2048", "150", "1.35.0"]
    r = run_kopsy(["get", "etcd-backups", NAME, "-o", "json"], store_env)
    doc = json.loads(r.stdout)
    assert [d["revision"] for d in doc] == [150, 100] and doc[0]["members"] == 3
    r = run_kopsy(["get", "etcd-backups", "nope.example.com"], store_env)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1

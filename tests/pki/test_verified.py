"""``pki/verified.json``: update trusts the recorded CA hash only for the exact bytes it vouches
for, checks everything again otherwise, and never imports cryptography while it vouches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kopsy.errors import KopsyError
from kopsy.pki import ca_cert_hash, generate_cluster_pki, verified
from kopsy.reconcile import update as U
from kopsy.state import open_store
from kopsy.state.clusters import READ_CACHE, ClusterStore
from tests.conftest import KOPSY

NAME = "demo.example.com"


@pytest.fixture
def store(tmp_path: Path, ssh_keypair: tuple[Path, Path]) -> ClusterStore:
    """A cluster made by the real ``kopsy create`` on a file:// store."""
    env = {**os.environ, "KOPSY_STATE_STORE": f"file://{tmp_path}/store", "HOME": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    r = subprocess.run([KOPSY, "create", "cluster", NAME, "--zones", "us-east-1a", "--ssh-public-key", str(ssh_keypair[1])],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return ClusterStore(open_store(f"file://{tmp_path}/store"))


def _path(store: ClusterStore, rel: str) -> Path:
    return Path(store.url_for(NAME, rel).removeprefix("file://"))


def test_create_records_the_ca_hash_beside_the_ca(store: ClusterStore) -> None:
    doc = json.loads(store.get_object(NAME, verified.VERIFIED))
    assert doc["caCertHash"] == ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))
    assert sorted(doc["sha256"]) == sorted(verified.INPUTS)
    assert b"PRIVATE" not in store.get_object(NAME, verified.VERIFIED)  # digests only


def test_update_reads_the_inputs_without_importing_cryptography(store: ClusterStore) -> None:
    script = (
        "import sys\n"
        "from kopsy.state import open_store\n"
        "from kopsy.state.clusters import ClusterStore\n"
        "from kopsy.reconcile.update import read_inputs\n"
        f"inp = read_inputs(ClusterStore(open_store({store.store.url!r})), {NAME!r})\n"
        "print(inp.ca_cert_hash)\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    ca, modules = r.stdout.splitlines()
    assert ca == ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))
    assert modules == "[]"


def test_a_cluster_created_before_the_record_gets_one_on_its_first_update(store: ClusterStore) -> None:
    _path(store, verified.VERIFIED).unlink()
    first = U.read_inputs(store, NAME)
    assert first.ca_cert_hash == ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))
    assert json.loads(store.get_object(NAME, verified.VERIFIED))["caCertHash"] == first.ca_cert_hash
    assert U.read_inputs(store, NAME).ca_cert_hash == first.ca_cert_hash


def test_a_dry_run_checks_but_writes_no_record(store: ClusterStore) -> None:
    _path(store, verified.VERIFIED).unlink()
    assert U.read_inputs(store, NAME, record_verified=False).ca_cert_hash == ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))
    assert not _path(store, verified.VERIFIED).exists()


def test_a_ca_key_swapped_under_the_record_is_still_refused(store: ClusterStore) -> None:
    other = generate_cluster_pki("other.example.com")
    _path(store, "pki/ca.key").write_bytes(other.ca_key.reveal())
    with pytest.raises(KopsyError, match="does not match the CA certificate"):
        U.read_inputs(store, NAME)


def test_a_new_ssh_key_is_checked_and_the_record_follows(store: ClusterStore, tmp_path: Path) -> None:
    _path(store, "ssh/public/admin").write_text("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDd not-a-key\n")
    with pytest.raises(KopsyError, match="not a valid OpenSSH public key"):
        U.read_inputs(store, NAME)
    from tests.conftest import write_ssh_keypair

    (tmp_path / "k2").mkdir()
    _, pub = write_ssh_keypair(tmp_path / "k2")
    _path(store, "ssh/public/admin").write_bytes(pub.read_bytes())
    assert U.read_inputs(store, NAME).ssh_public_key == pub.read_text().strip()
    objects = {rel: store.get_object(NAME, rel) for rel in verified.INPUTS}
    assert verified.vouched_ca_hash(store.get_object(NAME, verified.VERIFIED), objects) is not None


@pytest.mark.parametrize("record", [b"", b"{", b"[]", b'{"caCertHash": "sha256:00", "sha256": {}}'])
def test_a_damaged_record_only_means_checking_again(store: ClusterStore, record: bytes) -> None:
    _path(store, verified.VERIFIED).write_bytes(record)
    assert U.read_inputs(store, NAME).ca_cert_hash == ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))


def test_a_forged_hash_is_not_trusted_for_other_bytes(store: ClusterStore) -> None:
    """The record vouches only for the objects it names: by digest, and by the ETags it holds
    (create records them where the store's ETags follow from the bytes)."""
    doc = json.loads(store.get_object(NAME, verified.VERIFIED))
    assert sorted(doc["etags"]) == sorted(verified.INPUTS)
    doc["caCertHash"] = "sha256:" + "00" * 32
    doc["sha256"]["pki/ca.crt"] = "00" * 32
    doc["etags"]["pki/ca.crt"] = "00" * 32
    _path(store, verified.VERIFIED).write_text(json.dumps(doc))
    assert U.read_inputs(store, NAME).ca_cert_hash == ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))


def _counting(store: ClusterStore) -> tuple[ClusterStore, list[str]]:
    """The same store, recording every key read."""
    reads: list[str] = []
    inner = store.store
    real_get = inner.get

    def get(key: str):  # type: ignore[no-untyped-def]
        reads.append(key.split("/", 1)[1])
        return real_get(key)

    inner.get = get  # type: ignore[method-assign]
    return store, reads


def test_once_the_record_holds_the_etags_update_reads_neither_the_ca_nor_its_key(store: ClusterStore) -> None:
    U.read_inputs(store, NAME)  # the first update adds the listed ETags to create's record
    assert sorted(json.loads(store.get_object(NAME, verified.VERIFIED))["etags"]) == sorted(verified.INPUTS)
    want = ca_cert_hash(store.get_object(NAME, "pki/ca.crt"))
    counted, reads = _counting(store)
    assert U.read_inputs(counted, NAME).ca_cert_hash == want
    assert "pki/ca.key" not in reads and "pki/ca.crt" not in reads, reads
    assert reads == [READ_CACHE]  # the spec, the SSH key and the record come from the read cache


def test_a_ca_key_swapped_after_the_etags_were_recorded_is_still_refused(store: ClusterStore) -> None:
    U.read_inputs(store, NAME)
    other = generate_cluster_pki("other.example.com")
    _path(store, "pki/ca.key").write_bytes(other.ca_key.reveal())  # a new ETag: read and checked again
    with pytest.raises(KopsyError, match="does not match the CA certificate"):
        U.read_inputs(store, NAME)

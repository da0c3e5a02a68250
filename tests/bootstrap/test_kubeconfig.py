"""Merging admin credentials into kubeconfig files, checked with a real kubectl."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.tools import require_tool
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kopsy import kubeconfig as kc

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
    exe = require_tool("kubectl")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    proc = subprocess.run([exe, "--kubeconfig", str(path), *args], capture_output=True, text=True, env=env,
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


# Names and namespaces that Go's YAML (kubectl) reads as booleans, numbers or null when written
# plain, plus YAML's own special scalars; kubectl itself quotes them when it writes the file.
AWKWARD = [
    "y", "n", "Y", "N", "yes", "no", "Yes", "NO", "on", "off", "On", "OFF", "true", "False",
    "null", "Null", "~", "1e3", "1E3", "0o17", "017", "0x1F", "0b101", "1_000", "+1", "-1", ".5",
    "1.0", ".inf", "-.inf", ".NaN", "2001-12-14", "2001-12-14t21:59:43.10-05:00", "12:30", "190:20:30",
    "=", "<<", "#hash", "a: b", "- dash", "@at", "`tick", "%pct", "!bang", "&amp", "*star", "a b",
    "tab\there", "ünïcødé", "x" * 70,
]


def test_awkward_names_survive_a_merge_and_kubectl_still_reads_the_file(tmp_path, creds):
    path = tmp_path / "config"
    for i, value in enumerate(AWKWARD):  # kubectl writes the file, quoting as it sees fit
        kubectl(path, "config", "set-cluster", f"--server=https://c{i}.example.com", "--", value)
        kubectl(path, "config", "set-credentials", f"--token=t{i}", "--", value)
        kubectl(path, "config", "set-context", f"--cluster={value}", f"--user={value}", f"--namespace={value}", "--", value)
    kubectl(path, "config", "use-context", "y")
    before = json.loads(kubectl(path, "config", "view", "--raw", "-o", "json"))

    kc.export(path, creds)  # kopsy reads kubectl's file and writes it back
    after = json.loads(kubectl(path, "config", "view", "--raw", "-o", "json"))
    for section in ("clusters", "users", "contexts"):
        kept = [e for e in after[section] if e["name"] != "demo.example.com"]
        assert kept == before[section], section  # every entry unchanged, byte for byte
    assert {c["name"] for c in after["contexts"]} == {*AWKWARD, "demo.example.com"}
    assert after["current-context"] == "demo.example.com"

    rows = kubectl(path, "config", "get-contexts", "-o", "name").splitlines()
    words = lambda names: sorted(" ".join(n.split()) for n in names)  # noqa: E731 - kubectl's table expands tabs
    assert words(rows) == words([*AWKWARD, "demo.example.com"])
    kubectl(path, "config", "use-context", "n")
    assert kubectl(path, "config", "current-context").strip() == "n"

    # and kopsy's own removal leaves the file readable too
    assert kc.remove_context(path, "demo.example.com")
    again = json.loads(kubectl(path, "config", "view", "--raw", "-o", "json"))
    assert [e for e in again["contexts"]] == before["contexts"]


def test_files_with_merge_keys_and_bare_equals_signs_are_read(tmp_path, creds):
    """kubectl writes ``cluster: =`` and ``user: <<`` unquoted, and people write anchors with
    ``<<:`` merge keys; kopsy reads both as kubectl does and keeps what they mean."""
    path = tmp_path / "config"
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        "clusters:\n- name: base\n  cluster: &c\n    server: https://a.example.com\n"
        "- name: copy\n  cluster:\n    <<: *c\n    insecure-skip-tls-verify: y\n"
        "- name: =\n  cluster: {server: https://eq.example.com}\n"
        "contexts:\n- name: <<\n  context: {cluster: =, user: <<, namespace: \"y\"}\n"
        "users:\n- name: <<\n  user: {token: abc}\n"
        "current-context: <<\n"
    )
    before = json.loads(kubectl(path, "config", "view", "--raw", "-o", "json"))
    kc.export(path, creds)
    after = json.loads(kubectl(path, "config", "view", "--raw", "-o", "json"))
    for section in ("clusters", "users", "contexts"):
        assert [e for e in after[section] if e["name"] != "demo.example.com"] == before[section], section
    assert kc.needs_quotes("y") and kc.needs_quotes("0o17") and not kc.needs_quotes("demo.example.com")


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

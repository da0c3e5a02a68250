"""The ssh config and known-hosts files are untrusted input (issue 19): bounded, never executed,
refused in one line when they are not what they claim; folders kopsy makes for them are 0700."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from kopsy.errors import SSHError
from kopsy.remote.config import read_config as _read_config
from kopsy.remote.known_hosts import KnownHosts


@pytest.mark.parametrize(("text", "needle"), [
    ("Host " + "a" * (5 * 1024 * 1024) + "\n  User x\n", "limit"),  # over the 1 MiB cap
    ("Host " + "a" * 100_000 + "\n  User x\n", "characters long"),
    ("Match exec \"touch /tmp/kopsy-pwned\"\n  User x\n", "Match exec"),
    ("Match host x exec=true\n  User x\n", "Match exec"),
])
def test_a_hostile_ssh_config_is_refused_quickly_and_never_run(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "config"
    path.write_text(text)
    started = time.monotonic()
    with pytest.raises(SSHError, match=needle):
        _read_config(path)
    assert time.monotonic() - started < 2
    assert not Path("/tmp/kopsy-pwned").exists()


def test_an_ssh_config_fifo_or_binary_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SSHError, match="FIFO"):
        _read_config(fifo)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00" * 20)
    with pytest.raises(SSHError, match="not UTF-8"):
        _read_config(binary)


@pytest.mark.parametrize("content", [b"host ssh-ed25519 not!base64!\n", b"\xff\xfe\x00\x80" * 8])
def test_an_unreadable_known_hosts_file_is_one_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "known_hosts"
    path.write_bytes(content)
    with pytest.raises(SSHError, match="known-hosts"):
        KnownHosts(path)


def test_the_known_hosts_folder_is_private_under_umask_000(tmp_path: Path) -> None:
    import paramiko

    path = tmp_path / "home" / ".kopsy" / "known_hosts" / "demo"
    hosts = KnownHosts(path)
    old = os.umask(0)
    try:
        hosts.record("127.0.0.1", paramiko.Ed25519Key.from_private_key_file(str(_key(tmp_path))))
    finally:
        os.umask(old)
    for d in (tmp_path / "home", tmp_path / "home" / ".kopsy", path.parent):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _key(tmp: Path) -> Path:
    import subprocess

    key = tmp / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key

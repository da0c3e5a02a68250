"""``kopsy sandbox up`` installs openssh-server when sshd is missing (docs/sandbox.md), through the real CLI.

How sshd is made "missing" without touching this machine: each test runs ``up`` inside its own
mount namespace (``unshare -m``, private propagation: nothing is visible outside it) in which
``/usr/sbin/sshd`` is covered by a bind mount of ``/dev/null`` (not executable, so
``sshd.find_sshd()`` finds nothing). The installer is stubbed by an ``apt-get`` script first on
PATH: it logs its arguments and ``DEBIAN_FRONTEND``, and "installs" by removing that bind mount,
so the real sshd is back and ``up`` carries on. The sandbox's processes stay in that namespace;
``down`` (run from outside) stops them by pid as usual. Needs root (mount namespaces, and
``up`` only installs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from sandbox_helpers import KOPSY, clean_env, stop_sandbox

from tests.tools import require_tool

UNSHARE = shutil.which("unshare")
pytestmark = [
    pytest.mark.e2e,  # the real `kopsy sandbox up`
    pytest.mark.skipif(os.geteuid() != 0 or UNSHARE is None, reason="needs root and unshare (to hide sshd behind a bind mount)"),
]


@pytest.fixture(autouse=True)
def _debian_sshd() -> None:
    if require_tool("sshd") != "/usr/sbin/sshd":
        pytest.skip("needs Debian's /usr/sbin/sshd (the path the bind mount hides)")

FAKE_APT = """#!/bin/sh
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND apt-get $*" >> {log}
case "$*" in
  *install*openssh-server*) {install} ;;
esac
"""


def _up_without_sshd(tmp_path: Path, install: str, path: str = "") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir, log = tmp_path / "bin", tmp_path / "apt.log"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(FAKE_APT.format(log=log, install=install))
    apt.chmod(0o755)
    (tmp_path / "home").mkdir()
    env = {**clean_env(tmp_path / "home"), "PATH": path or f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    script = f'/bin/mount --bind /dev/null /usr/sbin/sshd && exec {KOPSY} sandbox up --dir "$1"'
    r = subprocess.run([str(UNSHARE), "-m", "/bin/sh", "-c", script, "sh", str(tmp_path / "sb")], env=env,
                       capture_output=True, text=True, timeout=120, check=False)
    return r, (log.read_text().splitlines() if log.exists() else [])


def test_up_installs_openssh_server_when_sshd_is_missing(tmp_path: Path) -> None:
    try:
        r, calls = _up_without_sshd(tmp_path, install="/bin/umount /usr/sbin/sshd")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "Installing OpenSSH's sshd (Debian package openssh-server)" in r.stderr
        assert calls == [
            "DEBIAN_FRONTEND=noninteractive apt-get update -qq",
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server",
        ]
        assert "Sandbox ready" in r.stdout
    finally:
        assert stop_sandbox(tmp_path / "sb") == []


def test_a_failed_install_is_reported_and_starts_nothing(tmp_path: Path) -> None:
    try:
        r, calls = _up_without_sshd(tmp_path, install="echo 'E: Unable to locate package openssh-server' >&2; exit 100")
        assert r.returncode == 1
        assert "Error: installing openssh-server failed" in r.stderr and "Unable to locate package" in r.stderr
        assert len(calls) == 2
        assert not (tmp_path / "sb" / "sandbox.json").exists()
    finally:
        assert stop_sandbox(tmp_path / "sb") == []


def test_without_apt_get_up_says_what_to_install(tmp_path: Path) -> None:
    try:
        r, calls = _up_without_sshd(tmp_path, install="true", path=str(tmp_path / "empty"))
        assert r.returncode == 1 and calls == []
        assert "sshd is not installed; install it (apt-get install -y openssh-server)" in r.stderr
        assert not (tmp_path / "sb" / "sandbox.json").exists()
    finally:
        assert stop_sandbox(tmp_path / "sb") == []

"""Fixtures for the sandbox tests: one real sandbox per test module, and a cluster admin key.

Every sandbox a test starts is stopped at teardown -- also when the test fails -- and the
teardown checks that no process carrying the sandbox's marker is left (by pid).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_helpers import Sandbox, start_sandbox, stop_sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """One sandbox for a test module; tests use their own cluster names so they do not collide."""
    base = tmp_path_factory.mktemp("sandbox")
    (base / "home").mkdir()
    sb = start_sandbox(base / "sb", base / "home")
    try:
        yield sb
    finally:
        assert stop_sandbox(sb.dir) == [], "processes were left behind by down"


@pytest.fixture
def sb(tmp_path: Path) -> Iterator[Sandbox]:
    """A sandbox of the test's own, with an admin key in ``home/.ssh`` (for tests that stop
    nodes or fault the cloud, which would disturb a shared one)."""
    yield from _own_sandbox(tmp_path, boot_time=0.0)


@pytest.fixture
def booting_sb(tmp_path: Path) -> Iterator[Sandbox]:
    """As ``sb``, with instances that take a second to boot (rolling updates must wait for them)."""
    yield from _own_sandbox(tmp_path, boot_time=1.0)


def _own_sandbox(tmp_path: Path, boot_time: float) -> Iterator[Sandbox]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    s = start_sandbox(tmp_path / "sb", home, boot_time=boot_time)
    try:
        yield s
    finally:
        assert stop_sandbox(s.dir) == [], "processes were left behind by down"


@pytest.fixture(scope="module")
def admin_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(private key file, public key line) of the clusters' admin, one per test module."""
    from tests.conftest import write_ssh_keypair

    priv, pub = write_ssh_keypair(tmp_path_factory.mktemp("keys"))
    return priv, pub.read_text().strip()

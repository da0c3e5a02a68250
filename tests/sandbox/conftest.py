"""Fixtures for the sandbox tests: one real sandbox per test module, and a cluster admin key.

Every sandbox a test starts is stopped at teardown -- also when the test fails -- and the
teardown checks that no process carrying the sandbox's marker is left (by pid).
"""

from __future__ import annotations

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


@pytest.fixture(scope="module")
def admin_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path_factory.mktemp("keys") / "id_ed25519"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    path.chmod(0o600)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    path.with_suffix(".pub").write_text(pub + "\n")
    return path, pub



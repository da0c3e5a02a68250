"""A cluster's known-hosts file: trust on first use, refuse a changed key.

Host keys live in a known-hosts file per cluster. A new key is recorded and reported once; a
changed key is refused with an explanation -- never paramiko's ``AutoAddPolicy``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from pathlib import Path

import paramiko

from kopsy.errors import SSHError


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint, so users can compare with ``ssh-keygen -l``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """A cluster's known-hosts file (OpenSSH format): trust on first use, refuse a changed key.

    Shared by the threads of one run, so reads and appends hold a lock; new keys are appended
    one line at a time so a crash never loses keys recorded before.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._keys = paramiko.HostKeys()
        if path.exists():
            try:
                self._keys.load(str(path))
            except (OSError, paramiko.SSHException) as exc:
                raise SSHError(f"cannot read the known-hosts file {path}: {exc}; fix or remove it") from exc
        self.notices: list[str] = []

    def known(self, name: str) -> dict[str, paramiko.PKey]:
        with self._lock:
            entry = self._keys.lookup(name)
            return dict(entry) if entry else {}

    def record(self, name: str, key: paramiko.PKey) -> None:
        with self._lock:
            if self._keys.check(name, key):
                return
            self._keys.add(name, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(f"{name} {key.get_name()} {key.get_base64()}\n")
            self.notices.append(
                f"recorded the host key of {name} ({key.get_name()} {fingerprint(key)}) in {self.path} "
                f"(trust on first use; a different key later will be refused)"
            )

    def drain_notices(self) -> list[str]:
        with self._lock:
            out, self.notices = self.notices, []
            return out


class TrustOnFirstUse(paramiko.MissingHostKeyPolicy):
    """paramiko calls this only for hosts with no recorded key: record it (and say so)."""

    def __init__(self, known: KnownHosts, name: str) -> None:
        self.known = known
        self.name = name

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        recorded = self.known.known(self.name)
        if recorded:
            # A key of another type than the one recorded: not a first use. OpenSSH would ask;
            # accepting it would let anyone bypass the changed-key check by offering a new type.
            raise paramiko.BadHostKeyException(hostname, key, next(iter(recorded.values())))
        self.known.record(self.name, key)

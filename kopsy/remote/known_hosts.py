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
            from kopsy.localfiles import SSH_CONFIG_LIMIT, LocalFileError, read_text

            try:
                read_text(path, SSH_CONFIG_LIMIT, "known-hosts file")  # a regular UTF-8 file within the cap
                self._keys.load(str(path))
            except LocalFileError as exc:
                raise SSHError(f"{exc.message}; fix or remove it") from None
            except (OSError, ValueError, paramiko.SSHException, paramiko.hostkeys.InvalidHostKey) as exc:
                raise SSHError(
                    f"the known-hosts file {path} has an entry kopsy cannot read "
                    f"({' '.join(str(exc).split())[:100]}); fix or remove that line"
                ) from None
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
            from kopsy.localfiles import make_private_dirs

            make_private_dirs(self.path.parent)  # 0700 whatever the umask
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

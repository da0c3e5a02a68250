"""Where one sandbox keeps its files; every path is derived from the sandbox directory.

Keeping the layout in one place lets ``up``, ``down``, ``status``, the supervisor and the tests
agree on paths without passing each one around.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @classmethod
    def at(cls, directory: str | Path) -> Layout:
        return cls(Path(directory).expanduser().resolve())

    @property
    def state_file(self) -> Path:
        """What ``up`` started (pids, port, marker); present only while the sandbox is up."""
        return self.root / "sandbox.json"

    @property
    def status_file(self) -> Path:
        """The supervisor's view of its nodes, rewritten when it changes."""
        return self.root / "nodes.json"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def amis_file(self) -> Path:
        return self.root / "amis.json"

    @property
    def packages_dir(self) -> Path:
        """The stand-in Kubernetes package index (``kopsy.sandbox.packages``)."""
        return self.root / "packages"

    @property
    def moto_log(self) -> Path:
        return self.root / "moto.log"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    @property
    def nodes_dir(self) -> Path:
        return self.root / "nodes"

    def node_dir(self, instance_id: str) -> Path:
        return self.nodes_dir / instance_id

    @property
    def socket_id(self) -> str:
        return hashlib.sha256(str(self.root).encode()).hexdigest()[:16]

    @property
    def socket_name(self) -> str:
        return socket_name(self.socket_id)


def socket_name(socket_id: str) -> str:
    """The supervisor's abstract unix socket (Linux): no path-length limit, no file to clean up."""
    return f"\0kopsy-sandbox-{socket_id}"

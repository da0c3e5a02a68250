"""kopsy/etcd/remote.py, the wrapper the rolling update calls: the helper's answers (exit codes,
one JSON line) turned into values or KopsyErrors."""

from __future__ import annotations

import json

import pytest

from kopsy.etcd.remote import EtcdCommandFailed, QuorumRefused, remove_member, snapshot
from kopsy.remote import CommandResult


class Conn:
    """Answers like an SSHConnection: one CommandResult per command run."""

    def __init__(self, exit_status: int, stdout: str = "", stderr: str = "") -> None:
        self.answer = (exit_status, stdout, stderr)
        self.commands: list[str] = []

    def run(self, command: str, timeout: float | None = None) -> CommandResult:
        self.commands.append(command)
        return CommandResult(command, *self.answer)


def test_snapshot_parses_the_one_json_line() -> None:
    line = {"timestamp": "2026-12-02T01:00:00Z", "key": "backups/etcd/2026-12-02T01:00:00Z/snapshot.db",
            "revision": 7, "size": 99, "sha256": "ab" * 32}
    conn = Conn(0, json.dumps(line) + "\n", "kopsy-helper: etcd snapshot stored\n")
    snap = snapshot(conn)
    assert (snap.timestamp, snap.revision, snap.size) == ("2026-12-02T01:00:00Z", 7, 99)
    assert conn.commands == ["sudo /usr/local/lib/kopsy/kopsy-helper etcd-snapshot"]
    with pytest.raises(EtcdCommandFailed, match="deadline exceeded"):
        snapshot(Conn(1, "", "kopsy-helper: etcdctl snapshot: ['context deadline exceeded']\n"))
    with pytest.raises(EtcdCommandFailed, match="cannot read"):
        snapshot(Conn(0, "not json\n"))


def test_remove_member_removed_absent_and_refused() -> None:
    assert remove_member(Conn(0, '{"name": "ip-1", "removed": true}\n'), "ip-1") is True
    assert remove_member(Conn(0, '{"name": "ip-1", "removed": false}\n'), "ip-1") is False
    with pytest.raises(QuorumRefused, match="below quorum"):
        remove_member(Conn(2, "", "kopsy-helper: removing etcd member ip-1 would leave 1 healthy of 2 members: below quorum, refused\n"), "ip-1")
    conn = Conn(0, '{"removed": false}\n')
    remove_member(conn, "ip-1; rm -rf /")
    assert conn.commands[0].endswith("--name 'ip-1; rm -rf /'")  # quoted for the remote shell

"""A minimal stand-in for kopsy-helper's etcd commands, until the etcd emulation (issue 15) lands.

The rolling update's contract (``kopsy.rolling.etcd_guard``) is two commands on a control plane:
``sudo /usr/local/lib/kopsy/kopsy-helper etcd-snapshot`` -> one JSON line, exit 0, and
``... etcd-remove-member --name MEMBER`` -> exit 0. This answers exactly those, and records
the calls so a test can check they came before the terminate. It models no etcd: the merge
replaces it with the real emulation of membership and snapshots.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime

from kopsy.sandbox.answers import Answer, command_argv

HELPER = "/usr/local/lib/kopsy/kopsy-helper"
CALLS: list[tuple[str, str, str]] = []  # (instance id, command, time): the supervisor's "etcd-calls" request
_lock = threading.Lock()


def etcd_helper_answer(instance_id: str, command: str, now: datetime) -> Answer | None:
    argv = command_argv(command) or []
    if argv[:1] != [HELPER] or len(argv) < 2 or argv[1] not in ("etcd-snapshot", "etcd-remove-member"):
        return None
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    with _lock:
        CALLS.append((instance_id, " ".join(argv[1:]), stamp))
    if argv[1] == "etcd-snapshot":
        return Answer(json.dumps({"snapshot": f"etcd-snapshot-{stamp}.db", "instance": instance_id, "sandbox": True}) + "\n")
    if len(argv) != 4 or argv[2] != "--name":
        return Answer("", "usage: kopsy-helper etcd-remove-member --name MEMBER\n", 2)
    return Answer("")

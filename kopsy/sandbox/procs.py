"""Starting and stopping the sandbox's processes, so that ``down`` leaves nothing behind.

Every process the sandbox starts carries ``KOPSY_SANDBOX_ID=<random id>`` in its environment,
and children (sshd's per-connection processes, moto's threads) inherit it. ``down`` stops the
recorded pids first, then sweeps ``/proc`` for any process still carrying this sandbox's id and
ends it by pid: it never matches processes by name, and never touches anything it did not start.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

MARKER = "KOPSY_SANDBOX_ID"


def spawn(
    argv: list[str], *, env: Mapping[str, str], log_path: Path, new_session: bool = True
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached from the terminal, output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=new_session,
            close_fds=True,
        )


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def carries_marker(pid: int, sandbox_id: str) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{MARKER}={sandbox_id}".encode() in environ.split(b"\0")


def marked_pids(sandbox_id: str) -> list[int]:
    """Live processes that carry this sandbox's marker (ourselves excluded)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and carries_marker(int(entry), sandbox_id) and alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until every pid has exited; return those still running at the deadline."""
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [p for p in pending if alive(p)]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return pending


def stop(pids: Iterable[int], *, grace: float = 5.0) -> list[int]:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; return pids that survived even that."""
    targets = [p for p in pids if alive(p)]
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    left = wait_gone(targets, grace)
    for pid in left:
        _signal(pid, signal.SIGKILL)
    return wait_gone(left, 2.0)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def process_rss_kib(pid: int) -> int:
    """Resident memory of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_pss_kib(pid: int) -> int:
    """Proportional memory of one process in KiB: shared pages (sshd's libraries) divided among
    the processes sharing them, so a sum over processes is the real total (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0

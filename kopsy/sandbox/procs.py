"""Starting and stopping the sandbox's processes, so that ``down`` leaves nothing behind.

Two nets, both by pid, never by process name:

- the process tree: before stopping a process, ``down`` (and the supervisor, for each sshd)
  records its descendants with their start times, and ends those still running afterwards.
  This is what catches sshd's per-connection processes: they outlive their listener, and sshd
  overwrites its environment area with its process title, so a marker cannot be read back;
- the sshd config path: an sshd listener keeps ``-f <sandbox dir>/nodes/<id>/sshd_config`` in
  its process title, which finds listeners orphaned by a supervisor that was killed outright;
- a marker: every process the sandbox starts gets ``KOPSY_SANDBOX_ID=<random id>`` in its
  environment (python children such as the node shell keep it readable), and ``down`` sweeps
  ``/proc`` for it last.
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


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may contain spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode().split()


def start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): tells a pid from a later reuse of it."""
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def descendants(*roots: int) -> dict[int, int]:
    """Every live descendant of the ``roots`` -> its start time (one pass over /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out: dict[int, int] = {}
    todo = [c for r in roots for c in children.get(r, [])]
    while todo:
        pid = todo.pop()
        started = start_time(pid)
        if pid not in out and started is not None and alive(pid):
            out[pid] = started
            todo.extend(children.get(pid, []))
    return out


def still_running(recorded: dict[int, int]) -> list[int]:
    """The recorded processes that still run (same pid, same start time)."""
    return [pid for pid, started in recorded.items() if alive(pid) and start_time(pid) == started]


def pids_with_cmdline(fragment: str) -> list[int]:
    """Live processes whose command line (or process title) contains ``fragment``, e.g. a path
    only this sandbox uses."""
    me, found = os.getpid(), []
    needle = fragment.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline.replace(b"\0", b" ") and alive(int(entry)):
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

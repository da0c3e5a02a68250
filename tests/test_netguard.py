"""The network guard the off-machine checks rely on does refuse, and records, before sending."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.netguard import attempts, guarded_env

PROBE = """
import socket, sitecustomize
assert getattr(sitecustomize, "NETGUARD", False), "the guard is not loaded: stop before any connection"
try:
    socket.create_connection(("198.51.100.7", 9), timeout=0.2)
except ConnectionRefusedError as exc:
    print("refused:", exc)
server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen(1)
socket.create_connection(server.getsockname(), timeout=2).close()
print("loopback ok")
"""


def test_the_guard_refuses_off_loopback_and_lets_loopback_through(tmp_path: Path) -> None:
    log = tmp_path / "net.log"
    env = guarded_env({k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, log)
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "refused: netguard: 198.51.100.7:9 is not on loopback" in r.stdout and "loopback ok" in r.stdout
    assert [line.split(" ", 1)[1] for line in attempts(log)] == ["198.51.100.7:9"]

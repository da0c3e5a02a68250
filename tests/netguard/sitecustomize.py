"""A network guard for the processes a test starts (put this folder on their PYTHONPATH).

Python imports ``sitecustomize`` at start-up, so every Python process of the run -- kopsy,
moto, the sandbox supervisor -- gets ``socket.socket.connect`` wrapped: a TCP or UDP
connection to anything but loopback is refused *before* any packet leaves, and recorded (one
``address:port`` line) in the file named by ``KOPSY_NETGUARD_LOG``. A test then asserts the
log is empty: nothing the run did led off this machine.
"""

from __future__ import annotations

import ipaddress
import os
import socket

NETGUARD = True  # a test checks this before it relies on the guard
_LOG = os.environ.get("KOPSY_NETGUARD_LOG", "")
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _outside(address: object) -> str | None:
    """``host:port`` when ``address`` is an internet address off loopback, else None."""
    if not (isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str)):
        return None  # a Unix socket path, or nothing we can judge
    host, port = address[0], address[1]
    try:
        candidates = [ipaddress.ip_address(host.split("%", 1)[0])]
    except ValueError:  # a name: judge every address it resolves to
        try:
            candidates = [ipaddress.ip_address(i[4][0].split("%", 1)[0]) for i in socket.getaddrinfo(host, port)]
        except OSError:
            return None  # unresolvable: connect fails by itself, sending nothing
    if all(ip.is_loopback for ip in candidates):
        return None
    return f"{host}:{port}"


def _refuse(target: str) -> None:
    if _LOG:
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()} {target}\n")
    raise ConnectionRefusedError(f"netguard: {target} is not on loopback; tests connect only to 127.0.0.0/8")


def _guarded_connect(self: socket.socket, address: object) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and (target := _outside(address)):
        _refuse(target)
    _connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and (target := _outside(address)):
        _refuse(target)
    return _connect_ex(self, address)  # type: ignore[arg-type]


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]

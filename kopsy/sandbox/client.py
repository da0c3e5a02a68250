"""Talking to the node supervisor over its abstract unix socket: one JSON line each way.

The node shell (``nodeshell.py``) speaks the same protocol with its own few stdlib lines.
"""

from __future__ import annotations

import json
import socket
from typing import Any

from kopsy.sandbox import SandboxError
from kopsy.sandbox.layout import socket_name


def request(socket_id: str, payload: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send one request and return the supervisor's reply; ``SandboxError`` if it cannot be reached."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(socket_name(socket_id))
            s.sendall(json.dumps(payload).encode() + b"\n")
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError as exc:
        raise SandboxError(f"the sandbox node supervisor is not reachable ({exc}); is the sandbox up? (kopsy sandbox status)") from exc
    try:
        reply: dict[str, Any] = json.loads(b"".join(chunks))
    except ValueError as exc:
        raise SandboxError("the sandbox node supervisor sent a garbled reply") from exc
    return reply

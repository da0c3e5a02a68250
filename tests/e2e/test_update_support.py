"""Helpers for the update/delete end-to-end tests (no tests here).

The tests drive the real ``kopsy`` executable against the moto server process. kopsy logs every
AWS call it makes to ``KOPSY_AWS_CALL_LOG`` (one ``service Operation`` line each, in order),
which is how the tests count mutating calls and check the order of deletes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.inventory import inventory as owned_resources  # noqa: F401  the old name of tests/inventory.py's helper
from tests.inventory import total  # noqa: F401

READ_PREFIXES = ("Describe", "Get", "List", "Head")
CLOUD_SERVICES = ("ec2", "iam", "elbv2", "elasticloadbalancing", "autoscaling")


def register_image(boto: Callable[[str], Any]) -> str:
    """moto has no Ubuntu 24.04 image: register one (tests pass it with --image)."""
    ec2 = boto("ec2")
    return str(ec2.register_image(Name="ubuntu-noble-24.04-test", RootDeviceName="/dev/sda1")["ImageId"])


def create_cluster(run: Callable[..., Any], env: dict[str, str], name: str, pub: Path, image: str, *extra: str) -> None:
    r = run(["create", "cluster", name, "--zones", "us-east-1a,us-east-1b", "--node-count", "2",
             "--image", image, "--ssh-public-key", str(pub), *extra], env)
    assert r.returncode == 0, r.stderr


def calls(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines() if " " in line]  # type: ignore[misc]


def mutating(log: list[tuple[str, str]], services: tuple[str, ...] = CLOUD_SERVICES) -> list[tuple[str, str]]:
    return [(s, op) for s, op in log if s in services and not op.startswith(READ_PREFIXES)]


def kill_after(cmd: list[str], env: dict[str, str], log: Path, mutations: int, timeout: float = 60) -> int:
    """Start ``cmd``, SIGKILL it once it has made ``mutations`` mutating cloud calls; return how many it made."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if len(mutating(calls(log))) >= mutations:
                proc.kill()
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    return len(mutating(calls(log)))


class RecordingProxy:
    """A loopback HTTP proxy in front of moto server that keeps the parameters of every
    query-protocol request (EC2, IAM, ELB and Auto Scaling send form bodies), and can answer
    chosen operations with an AWS error instead of forwarding them (``fail``). Lets a test see
    *what* kopsy sent (e.g. a ClientToken), which the call log does not show."""

    def __init__(self, target: str) -> None:
        import http.client
        import threading
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        host, port = urllib.parse.urlsplit(target).hostname, urllib.parse.urlsplit(target).port
        assert host and host.startswith("127."), "tests talk only to loopback"
        self.requests: list[dict[str, str]] = []
        # Action -> queued (status, XML body) answers, or (status, body, content type)
        self.fail: dict[str, list[tuple[Any, ...]]] = {}
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = {}
                if "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
                    form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
                with lock:
                    if form:
                        proxy.requests.append(form)
                    queued = proxy.fail.get(form.get("Action", ""))
                    answer = queued.pop(0) if queued else None
                if answer is not None:
                    ctype = answer[2] if len(answer) > 2 else "text/xml"
                    status, headers, data = answer[0], [("Content-Type", ctype)], answer[1]
                else:
                    conn = http.client.HTTPConnection(host, port, timeout=120)
                    skip = {"host", "content-length", "connection", "expect", "transfer-encoding"}
                    conn.request(self.command, self.path, body=body,
                                 headers={k: v for k, v in self.headers.items() if k.lower() not in skip})
                    resp = conn.getresponse()
                    status, headers, data = resp.status, resp.getheaders(), resp.read()
                    conn.close()
                self.send_response_only(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def sent(self, action: str) -> list[dict[str, str]]:
        return [r for r in self.requests if r.get("Action") == action]


HTML_500 = (500, b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
                 b"<h1>Internal Server Error</h1><p>The server encountered an internal error.</p>\n", "text/html")


def query_error(code: str, message: str) -> tuple[int, bytes]:
    """An AWS query-protocol error answer (IAM, ELB, Auto Scaling), as botocore parses it."""
    return 400, (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                 f"<RequestId>kopsy-test</RequestId></ErrorResponse>").encode()

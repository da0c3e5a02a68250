"""Bootstrap test fixtures: a cluster PKI and a stand-in for EC2's IMDSv2 on loopback."""

from __future__ import annotations

import http.server
import json
from collections.abc import Iterator

import pytest

from kopsy.pki import ClusterPKI, ca_cert_hash, generate_cluster_pki
from tests.doubles.httpserver import serve_on_loopback


@pytest.fixture(scope="session")
def cluster_pki() -> ClusterPKI:
    return generate_cluster_pki("demo.example.com")


@pytest.fixture(scope="session")
def ca_hash(cluster_pki: ClusterPKI) -> str:
    return ca_cert_hash(cluster_pki.ca_cert)


class _FakeImds(http.server.BaseHTTPRequestHandler):
    """IMDSv2 as EC2 answers it: a session token first, then metadata with that token only."""

    TOKEN = "imds-session-token"
    VALUES = {
        "/latest/meta-data/iam/security-credentials/": "kopsy-nodes-role",
        "/latest/meta-data/iam/security-credentials/kopsy-nodes-role": json.dumps(
            {"Code": "Success", "AccessKeyId": "testing", "SecretAccessKey": "testing", "Token": "tok"}),
        "/latest/meta-data/placement/region": "us-east-1",
        "/latest/meta-data/local-hostname": "ip-172-20-32-10.ec2.internal",
        "/latest/meta-data/local-ipv4": "172.20.32.10",
        "/latest/meta-data/instance-id": "i-0123456789abcdef0",
        "/latest/meta-data/placement/availability-zone": "us-east-1a",
    }

    def do_PUT(self) -> None:  # noqa: N802
        if self.path != "/latest/api/token" or "X-aws-ec2-metadata-token-ttl-seconds" not in self.headers:
            return self._send(400, "")
        self._send(200, self.TOKEN)

    def do_GET(self) -> None:  # noqa: N802
        if self.headers.get("X-aws-ec2-metadata-token") != self.TOKEN:
            return self._send(401, "")
        value = self.VALUES.get(self.path)
        self._send(200 if value is not None else 404, value or "")

    def _send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[str]:
    with serve_on_loopback(_FakeImds) as url:
        yield url

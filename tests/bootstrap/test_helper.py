"""The on-instance helper (cloudinit/kopsy-helper.py): SigV4 checked against botocore's signer,
and get/put/status/imds run for real against moto server and a stand-in IMDS on loopback."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the on-instance helper as a subprocess against moto server

HELPER = Path(__file__).resolve().parents[2] / "cloudinit" / "kopsy-helper.py"


def _load_helper():
    spec = importlib.util.spec_from_file_location("kopsy_helper", HELPER)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("method,url,body,token", [
    ("GET", "https://kopsy-state.s3.us-east-1.amazonaws.com/demo.example.com/pki/ca.crt", b"", "sessiontoken"),
    ("PUT", "https://s3.eu-west-1.amazonaws.com/my.dotted.bucket/p/demo/secrets/bootstrap-token", b"abc\n", ""),
    ("GET", "http://127.0.0.1:9000/bucket/a%20b/c", b"", "t"),
])
def test_sigv4_matches_botocore(monkeypatch, method, url, body, token):
    import hashlib

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    helper = _load_helper()
    region = "eu-west-1" if "eu-west-1" in url else "us-east-1"
    now = dt.datetime(2026, 11, 22, 1, 2, 3, tzinfo=dt.timezone.utc)
    payload = hashlib.sha256(body).hexdigest()
    ours = helper.sign(method, url, region, ("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
                       payload, now)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    req = AWSRequest(method=method, url=url, data=body, headers={"X-Amz-Content-SHA256": payload})
    botocore.auth.S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token or None),
                              "s3", region).add_auth(req)
    assert ours["Authorization"] == req.headers["Authorization"]
    assert ours["x-amz-date"] == req.headers["X-Amz-Date"]


def _run(args: list[str], imds: str, aws_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["KOPSY_IMDS_ENDPOINT"] = imds
    env["NO_PROXY"] = "127.0.0.1"
    return subprocess.run([sys.executable, str(HELPER), *args], env=env, capture_output=True, text=True, timeout=60)


def test_helper_gets_and_puts_through_a_configured_s3_endpoint(boto, aws_env, imds, tmp_path):
    s3 = boto("s3")
    s3.create_bucket(Bucket="kopsy-state")
    s3.put_object(Bucket="kopsy-state", Key="prefix/demo.example.com/pki/ca.crt", Body=b"CA-BYTES")
    s3.put_object(Bucket="kopsy-state", Key="prefix/demo.example.com/secrets/bootstrap-token", Body=b"abcdef.0123456789abcdef\n")
    config = tmp_path / "bootstrap-config.json"
    config.write_text(json.dumps({"stateStore": "s3://kopsy-state/prefix/demo.example.com",
                                  "s3Endpoint": aws_env["AWS_ENDPOINT_URL"]}))
    dest = tmp_path / "pki" / "ca.crt"
    r = _run(["--config", str(config), "get", "pki/ca.crt", str(dest), "--mode", "0644"], imds, aws_env)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == b"CA-BYTES" and (dest.stat().st_mode & 0o777) == 0o644

    token = tmp_path / "token"
    r = _run(["--config", str(config), "get", "secrets/bootstrap-token", str(token)], imds, aws_env)
    assert r.returncode == 0 and (token.stat().st_mode & 0o777) == 0o600
    assert "abcdef" not in r.stdout + r.stderr  # the helper never echoes what it fetched

    new = tmp_path / "new-token"
    new.write_bytes(b"zyxwvu.9876543210zyxwvu\n")
    r = _run(["--config", str(config), "put", "secrets/bootstrap-token", str(new)], imds, aws_env)
    assert r.returncode == 0, r.stderr
    got = s3.get_object(Bucket="kopsy-state", Key="prefix/demo.example.com/secrets/bootstrap-token")["Body"].read()
    assert got == b"zyxwvu.9876543210zyxwvu\n"


def test_helper_fails_fast_on_a_missing_object_and_retries_the_network(boto, aws_env, imds, tmp_path, monkeypatch):
    helper = _load_helper()
    boto("s3").create_bucket(Bucket="kopsy-state")
    monkeypatch.setattr(helper, "IMDS", imds)
    monkeypatch.setattr(helper.time, "sleep", lambda s: None)
    cfg = {"stateStore": "s3://kopsy-state/demo", "s3Endpoint": aws_env["AWS_ENDPOINT_URL"]}
    with pytest.raises(SystemExit, match="HTTP 404 for GET pki/ca.crt: s3://kopsy-state/demo/pki/ca.crt is not in"):
        helper.s3_request(cfg, "GET", "pki/ca.crt", deadline=0.5)
    cfg["s3Endpoint"] = "http://127.0.0.1:9"  # nothing listens: retried until the deadline, then a clear error
    with pytest.raises(SystemExit, match="giving up: .*for GET pki/ca.crt"):
        helper.s3_request(cfg, "GET", "pki/ca.crt", deadline=0.5)


def test_helper_status_and_imds(imds, aws_env, tmp_path):
    status = tmp_path / "bootstrap.json"
    r = _run(["status", "kubeadm-join", "--error", 'it said "no"', "--file", str(status)], imds, aws_env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(status.read_text())
    assert doc["phase"] == "kubeadm-join" and doc["error"] == 'it said "no"' and doc["updated"].endswith("Z")
    r = _run(["imds", "local-hostname"], imds, aws_env)
    assert r.stdout == "ip-172-20-32-10.ec2.internal\n"


def test_helper_refuses_a_file_store(imds, aws_env, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"stateStore": "file:///srv/state/demo"}))
    r = _run(["--config", str(config), "get", "pki/ca.crt", str(tmp_path / "x")], imds, aws_env)
    assert r.returncode != 0 and "not s3://" in r.stderr


def test_helper_waits_for_role_credentials(boto, aws_env, imds, monkeypatch):
    """A fresh instance profile can take a moment to reach IMDS: retried, not fatal."""
    import urllib.error

    helper = _load_helper()
    s3 = boto("s3")
    s3.create_bucket(Bucket="kopsy-state")
    s3.put_object(Bucket="kopsy-state", Key="demo/pki/ca.crt", Body=b"CA")
    monkeypatch.setattr(helper, "IMDS", imds)
    monkeypatch.setattr(helper.time, "sleep", lambda s: None)
    real, attempts = helper.credentials, []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise urllib.error.HTTPError("http://imds", 404, "Not Found", None, None)  # type: ignore[arg-type]
        return real()

    monkeypatch.setattr(helper, "credentials", flaky)
    cfg = {"stateStore": "s3://kopsy-state/demo", "s3Endpoint": aws_env["AWS_ENDPOINT_URL"]}
    assert helper.s3_request(cfg, "GET", "pki/ca.crt", deadline=60) == b"CA"
    assert len(attempts) == 3


@pytest.mark.parametrize("url,extra", [
    ("https://kopsy-state.s3.us-east-1.amazonaws.com/?list-type=2&prefix=demo.example.com%2Fbackups%2Fetcd%2F", {}),
    ("http://127.0.0.1:9000/bucket/demo/backups/etcd/2026-12-02T01%3A00%3A00Z/snapshot.db",
     {"x-amz-server-side-encryption": "AES256"}),
])
def test_sigv4_with_a_query_and_signed_extra_headers_matches_botocore(monkeypatch, url, extra):
    """The etcd backups list the bucket (a query string) and write with SSE headers, both signed."""
    import hashlib

    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    helper = _load_helper()
    now = dt.datetime(2026, 12, 2, 1, 2, 3, tzinfo=dt.timezone.utc)
    payload = hashlib.sha256(b"").hexdigest()
    method = "PUT" if extra else "GET"
    ours = helper.sign(method, url, "us-east-1", ("AKIDEXAMPLE", "secret", ""), payload, now, extra)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: now.replace(tzinfo=None))
    req = AWSRequest(method=method, url=url, data=b"", headers={"X-Amz-Content-SHA256": payload, **extra})
    botocore.auth.S3SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "s3", "us-east-1").add_auth(req)
    assert ours["Authorization"] == req.headers["Authorization"]

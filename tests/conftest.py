"""Fixtures shared by every test area.

- ``moto_server``: a real moto server *process* on 127.0.0.1 (one per test session); tests
  reach it through ``AWS_ENDPOINT_URL`` exactly as kopsy reaches AWS.
- ``aws_env``: a clean environment for a kopsy subprocess pointed at that server (moto state
  reset per test), with dummy credentials and a throw-away HOME.
- ``run_kopsy``: runs the real ``kopsy`` executable and returns the CompletedProcess.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REGION = "us-east-1"


def pytest_configure(config: pytest.Config) -> None:
    """Safety net: whatever escapes a test's explicit environment talks to a closed loopback port,
    never to real AWS (test traffic stays on 127.0.0.0/8)."""
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:9"
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing-not-real")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing-not-real")
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"  # never look for credentials at 169.254.169.254
    os.environ.pop("AWS_PROFILE", None)
    # One cache of trimmed botocore models (kopsy/cloud/aws/models.py) for every kopsy process
    # of the run, whatever HOME a test gives it: generating them costs ~0.5 s of CPU.
    import tempfile

    cache = Path(tempfile.gettempdir()) / f"kopsy-tests-cache-{os.getuid()}"
    os.environ.setdefault("XDG_CACHE_HOME", str(cache))
    # Compiled bytecode for every kopsy process too: with PYTHONDONTWRITEBYTECODE set (this
    # machine's image sets it) each of the suite's thousands of kopsy runs compiled kopsy's
    # sources again (~0.36 s of CPU for all of kopsy/). The .pyc files go to a prefix directory
    # beside the models cache, not into the checkout; Python checks them against the source's
    # mtime and size, so an edited module is compiled afresh.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(cache / "pycache"))
    sys.dont_write_bytecode = False
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]


KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class MotoServer:
    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


def start_moto_server(extra_env: dict[str, str] | None = None) -> MotoServer:
    port = free_port()
    env = {**os.environ, **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/moto-api/data.json")
    except Exception:
        proc.kill()
        raise
    return MotoServer(url, proc)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_moto_server()
    yield server
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()


SSH_SAFETY_NET = (
    "# Written by tests/conftest.py: a test that forgets to map an instance's address to its\n"
    "# loopback stand-in reaches a closed loopback port, never the public-looking address moto made up.\n"
    "Host *\n  HostName 127.0.0.1\n  Port 9\n"
)


def aws_environment(endpoint: str, home: Path) -> dict[str, str]:
    """The environment a kopsy subprocess gets: only loopback endpoints, dummy credentials, and a
    default ~/.ssh/config that sends any unmapped host to a closed loopback port."""
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not (ssh_dir / "config").exists():
        (ssh_dir / "config").write_text(SSH_SAFETY_NET)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "HOME": str(home),
            "KUBECONFIG": str(home / ".kube" / "config"),
            "EDITOR": "false",
            "NO_PROXY": "127.0.0.1,localhost",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    env.pop("AWS_PROFILE", None)
    return env


@pytest.fixture
def aws_env(moto_server: MotoServer, tmp_path: Path) -> dict[str, str]:
    moto_server.reset()
    home = tmp_path / "home"
    home.mkdir()
    return aws_environment(moto_server.url, home)


@pytest.fixture
def boto(aws_env: dict[str, str]) -> Callable[[str], object]:
    """boto3 clients pointed at the test's moto server (for checking outcomes)."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )

    def make(service: str) -> object:
        return session.client(service, endpoint_url=aws_env["AWS_ENDPOINT_URL"])

    return make


@pytest.fixture
def state_bucket(boto: Callable[[str], object]) -> str:
    s3 = boto("s3")
    s3.create_bucket(Bucket="kopsy-state")  # type: ignore[attr-defined]
    return "s3://kopsy-state"


def run(
    args: list[str], env: dict[str, str], input: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KOPSY, *args], env=env, input=input, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process moto (``mock_aws``) with dummy credentials and no endpoint override, for
    component tests that drive kopsy's engine directly (testing ladder step 2)."""
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def run_kopsy() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run


@pytest.fixture
def ssh_keypair(tmp_path: Path) -> tuple[Path, Path]:
    """An ed25519 key pair on disk, as a user would have in ~/.ssh."""
    return write_ssh_keypair(tmp_path)


def write_ssh_keypair(directory: Path) -> tuple[Path, Path]:
    """(private, public) ed25519 key files in ``directory`` (for fixtures wider than one test)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    priv = directory / "id_ed25519"
    pub = directory / "id_ed25519.pub"
    priv.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        )
    )
    priv.chmod(0o600)
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + b" test@kopsy\n"
    )
    return priv, pub

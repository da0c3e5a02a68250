"""Fixtures for validate tests: moto instances with real loopback sshd doubles (see validate_doubles.py)."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from validate_doubles import FakeCluster

from tests.tools import require_tool

CLUSTER = "demo.example.com"


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard for in-process tests: any TCP connection kopsy's SSH layer opens must go to 127.0.0.0/8.

    moto hands out public-looking addresses; the ssh config must map every one of them. An
    unmapped address fails the test here instead of sending a packet off this machine."""
    import ipaddress
    import socket

    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        for info in socket.getaddrinfo(address[0], address[1], proto=socket.IPPROTO_TCP):
            ip = ipaddress.ip_address(info[4][0])
            assert ip.is_loopback, f"test tried to connect to non-loopback {address[0]} ({ip})"
        return real(address, *args, **kwargs)

    import kopsy.remote.connection as ssh_module

    monkeypatch.setattr(ssh_module.socket, "create_connection", guarded)


@pytest.fixture
def clients(aws_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """kopsy's own AwsClients, pointed at the test's moto server (for driving the engine in-process)."""
    for key in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.setenv(key, aws_env[key])
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    from kopsy.cloud.aws.session import AwsClients

    return AwsClients("us-east-1")


@pytest.fixture
def fake_cluster(boto: Callable[[str], Any], ssh_keypair: tuple[Path, Path], tmp_path: Path
                 ) -> Iterator[Callable[..., FakeCluster]]:
    """make(groups=[(ig, role, count)], name=...) -> a FakeCluster whose sshds are stopped at teardown."""
    require_tool("sshd")
    made: list[FakeCluster] = []

    def make(groups: list[tuple[str, str, int]], name: str = CLUSTER) -> FakeCluster:
        workdir = tmp_path / f"fake-{len(made)}"
        workdir.mkdir()
        priv, pub = ssh_keypair
        fc = FakeCluster.launch(name, workdir, boto("ec2"), boto("autoscaling"), groups,
                                getpass.getuser(), priv, pub)
        made.append(fc)
        return fc

    yield make
    for fc in made:
        fc.stop()

"""Sample specs and a helper-process driver shared by the state tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kopsy.spec.model import ROLE_CONTROL_PLANE, ROLE_NODE, Cluster, InstanceGroup, Subnet, Taint

HELPER = Path(__file__).with_name("_proc.py")


def point_at_moto(monkeypatch: pytest.MonkeyPatch, aws_env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in aws_env.items():
        if name.startswith("AWS_") or name == "NO_PROXY":
            monkeypatch.setenv(name, value)


def sample_cluster(name: str = "demo.example.com") -> Cluster:
    return Cluster(
        name=name,
        kubernetes_version="1.33.2",
        subnets=[Subnet(name="us-east-1a", zone="us-east-1a", cidr="172.20.32.0/19")],
        ssh_key_name=f"kopsy-{name}",
        config_base=f"s3://kopsy-state/{name}",
        creation_timestamp="2026-11-22T00:00:00Z",
        annotations={"kopsy.io/ssh-public-key-path": "/home/u/.ssh/id_ed25519.pub"},
    )


def sample_groups(name: str = "demo.example.com") -> list[InstanceGroup]:
    return [
        InstanceGroup(
            name="control-plane-us-east-1a",
            cluster_name=name,
            role=ROLE_CONTROL_PLANE,
            machine_type="t3.medium",
            min_size=1,
            max_size=1,
            subnets=["us-east-1a"],
            taints=[Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule")],
        ),
        InstanceGroup(
            name="nodes",
            cluster_name=name,
            role=ROLE_NODE,
            machine_type="t3.medium",
            min_size=2,
            max_size=3,
            subnets=["us-east-1a"],
            node_labels={"team": "a"},
        ),
    ]


class Proc:
    """A helper subprocess (``_proc.py``) that reports JSON lines on stdout."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, str(HELPER), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )

    def read(self, timeout: float = 30.0) -> dict:
        """The next JSON line (the helper always answers; a crash shows its stderr)."""
        deadline = time.monotonic() + timeout
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            self.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            assert self.popen.stderr is not None
            raise AssertionError(f"helper exited {self.popen.returncode}: {self.popen.stderr.read()}")
        return dict(json.loads(line))

    def finish(self, timeout: float = 30.0) -> int:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
            for stream in (self.popen.stdout, self.popen.stderr):
                if stream:
                    stream.close()

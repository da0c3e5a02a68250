"""Against a local AWS emulation, ``kopsy validate`` connects only to loopback.

moto hands out real internet addresses as instance IPs. Without a mapping in the ssh config,
validate used to fall back to such an address: an SSH connection offering the user's key to a
stranger's host. Now, with the AWS endpoint on loopback, any address off loopback is refused
before a packet is sent, and said so per machine (docs/validate.md, "SSH")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_update_support import create_cluster, register_image
from tests.netguard import attempts, guarded_env

pytestmark = pytest.mark.e2e

NAME = "closed.example.com"


def test_unmapped_instances_are_refused_not_dialled(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 0
    addresses = [i.get("PublicIpAddress") or i["PrivateIpAddress"]
                 for r in boto("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    assert addresses and not any(a.startswith("127.") for a in addresses)  # what moto hands out

    empty = tmp_path / "ssh_config"
    empty.write_text("")
    log = tmp_path / "net.log"
    r = run_kopsy(["validate", "cluster", NAME, "--ssh-config", str(empty), "--connect-timeout", "2"], guarded_env(env, log))
    assert r.returncode != 0
    assert "refusing to connect to" in r.stdout + r.stderr and "local emulation" in r.stdout + r.stderr, r.stdout + r.stderr
    assert attempts(log) == [], "validate tried to reach an emulated instance's address off this machine"

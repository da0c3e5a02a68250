"""Zones are checked against the region's real ones before anything is created.

``us-east-1z`` is shaped like a zone but us-east-1 has none such: create refuses it when it can
ask AWS, and update refuses it before its first mutating call (it used to create the VPC and
then fail at CreateSubnet). A zone not even shaped like one fails at create, offline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import calls, create_cluster, mutating, register_image

pytestmark = pytest.mark.e2e

NAME = "zones.example.com"


def _store_keys(boto: Callable[[str], Any]) -> list[str]:
    return [o["Key"] for o in boto("s3").list_objects_v2(Bucket="kopsy-state").get("Contents", [])]


def test_create_refuses_a_zone_the_region_does_not_have_and_writes_nothing(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path],
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    r = run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a,us-east-1z", "--image", "ami-12345678",
                   "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode != 0
    line = r.stderr.strip()
    assert line.startswith("Error: ") and "\n" not in line, r.stderr
    assert "'us-east-1z' is not in region us-east-1" in line
    zones = [z["ZoneName"] for z in boto("ec2").describe_availability_zones()["AvailabilityZones"]]
    assert zones and all(z in line for z in zones)  # the error lists the region's zones
    assert "us-east-1a" in zones
    assert _store_keys(boto) == []


def test_a_zone_not_shaped_like_one_fails_at_create_offline(run_kopsy: Callable[..., Any], tmp_path: Path,
                                                             ssh_keypair: tuple[Path, Path]) -> None:
    store = tmp_path / "store"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    r = run_kopsy(["create", "cluster", NAME, "--zones", "useast1a", "--image", "ami-12345678",
                   "--ssh-public-key", str(ssh_keypair[1]), "--state", f"file://{store}"], env)
    assert r.returncode != 0
    assert "'useast1a' is not an AWS availability zone like us-east-1a" in r.stderr
    assert not store.exists() or not any(store.rglob("*"))
    # shaped like a zone, no credentials: create cannot ask AWS and accepts it (update checks)
    r = run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1z", "--image", "ami-12345678",
                   "--ssh-public-key", str(ssh_keypair[1]), "--state", f"file://{store}"], env)
    assert r.returncode == 0, r.stderr


def test_update_refuses_an_unknown_zone_before_anything_is_created(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket, "KOPSY_AWS_CALL_LOG": str(tmp_path / "calls.log")}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    # the zone goes wrong in the store behind create's back (an edit, an old spec)
    for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(k, env[k])
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.state import open_store
    from kopsy.state.clusters import ClusterStore

    store = ClusterStore(open_store(state_bucket, clients=AwsClients("us-east-1")))
    cluster, etag = store.get_cluster(NAME)
    cluster.subnets[1].zone = "us-east-1z"
    store.replace_cluster(cluster, etag)

    for args in (["update", "cluster", NAME], ["update", "cluster", NAME, "--yes"]):
        r = run_kopsy(args, env)
        assert r.returncode != 0, r.stdout
        assert "'us-east-1z' is not in region us-east-1, which has us-east-1a, us-east-1b" in r.stderr
    assert mutating(calls(tmp_path / "calls.log")) == []
    assert boto("ec2").describe_vpcs(Filters=[{"Name": "tag:kopsy.io/cluster", "Values": [NAME]}])["Vpcs"] == []

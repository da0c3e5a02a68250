"""``update`` acts only on a whole, valid cluster: a damaged store builds nothing and deletes
nothing, and a running group goes only after ``kopsy delete instancegroup`` (issue 19).

The real executable against the moto server process; the store is damaged with boto3 the way
an S3 lifecycle rule, a wrong prefix or a hand edit would.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import calls, create_cluster, mutating, owned_resources, register_image, total

pytestmark = pytest.mark.e2e

NAME = "whole.example.com"
OTHER = "other.example.com"
CP = "control-plane-us-east-1a"


@pytest.fixture
def env(aws_env: dict[str, str], state_bucket: str, tmp_path: Path) -> dict[str, str]:
    return {**aws_env, "KOPSY_STATE_STORE": state_bucket, "KOPSY_AWS_CALL_LOG": str(tmp_path / "calls.log")}


@pytest.fixture
def cluster(env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path]) -> str:
    image = register_image(boto)
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    return image


def bucket(env: dict[str, str]) -> str:
    return env["KOPSY_STATE_STORE"].removeprefix("s3://").split("/", 1)[0]


def keys(boto: Callable[[str], Any], env: dict[str, str], prefix: str = "") -> dict[str, bytes]:
    s3 = boto("s3")
    out = {}
    for o in s3.list_objects_v2(Bucket=bucket(env), Prefix=prefix).get("Contents", []):
        out[o["Key"]] = s3.get_object(Bucket=bucket(env), Key=o["Key"])["Body"].read()
    return out


def remove(boto: Callable[[str], Any], env: dict[str, str], *rels: str) -> None:
    for rel in rels:
        boto("s3").delete_object(Bucket=bucket(env), Key=f"{NAME}/{rel}")


def error_line(r: Any) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout[-500:], r.stderr[-500:])
    lines = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "unexpected" not in lines[0] and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def groups_in_aws(boto: Callable[[str], Any]) -> set[str]:
    asgs = {g["AutoScalingGroupName"] for g in boto("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]}
    lts = {t["LaunchTemplateName"] for t in boto("ec2").describe_launch_templates(MaxResults=100)["LaunchTemplates"]}
    return asgs | lts


def test_a_store_without_its_control_plane_group_builds_nothing(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], tmp_path: Path
) -> None:
    remove(boto, env, f"instancegroup/{CP}")
    for args in (["update", "cluster", NAME], ["update", "cluster", NAME, "--yes"]):
        line = error_line(run_kopsy(args, env))
        assert "0 control-plane instance group(s)" in line and "1, 3 or 5" in line and "S3 versioning" in line, line
    assert not mutating(calls(tmp_path / "calls.log")), "nothing may change in AWS"
    assert total(owned_resources(boto, NAME)) == 0


def test_a_built_cluster_whose_groups_vanished_deletes_nothing_and_names_them(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], tmp_path: Path
) -> None:
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    before = owned_resources(boto, NAME)
    assert before["AutoScalingGroup"] and before["LaunchTemplate"]
    remove(boto, env, f"instancegroup/{CP}", "instancegroup/nodes")
    (tmp_path / "calls.log").unlink()
    store_before = keys(boto, env)
    for args in (["update", "cluster", NAME], ["update", "cluster", NAME, "--yes"]):
        line = error_line(run_kopsy(args, env))
        assert f"{env['KOPSY_STATE_STORE']}/{NAME}/instancegroup/{CP}" in line, line
        assert f"{env['KOPSY_STATE_STORE']}/{NAME}/instancegroup/nodes" in line, line
        assert "never taken as a request to delete" in line and "kopsy delete instancegroup" in line, line
    assert not mutating(calls(tmp_path / "calls.log")), "nothing may change in AWS"
    assert owned_resources(boto, NAME) == before
    assert keys(boto, env) == store_before, "the lock must be released and nothing else written"


def test_delete_instancegroup_then_update_removes_exactly_that_group(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any]
) -> None:
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    before = owned_resources(boto, NAME)
    assert groups_in_aws(boto) == {f"{CP}.{NAME}", f"nodes.{NAME}"}

    dry = run_kopsy(["delete", "instancegroup", "nodes", "--name", NAME], env)
    assert dry.returncode == 0 and "Must specify --yes" in dry.stdout, dry.stderr
    assert f"{NAME}/instancegroup/nodes" in keys(boto, env, NAME)

    r = run_kopsy(["delete", "ig", "nodes", "--name", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    stored = keys(boto, env, NAME)
    assert f"{NAME}/instancegroup/nodes" not in stored and f"{NAME}/removed/instancegroup/nodes" in stored

    plan = run_kopsy(["update", "cluster", NAME], env)
    assert plan.returncode == 0, plan.stderr
    assert "Will delete resources:" in plan.stdout and f"nodes.{NAME}" in plan.stdout, plan.stdout

    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert groups_in_aws(boto) == {f"{CP}.{NAME}"}
    after = owned_resources(boto, NAME)
    for kind in before:
        if kind in ("AutoScalingGroup", "LaunchTemplate", "Instance", "Volume", "NetworkInterface"):  # the group's own
            continue
        assert sorted(after[kind]) == sorted(before[kind]), kind
    assert f"{NAME}/removed/instancegroup/nodes" not in keys(boto, env, NAME), "the record is dropped once used"
    again = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert again.returncode == 0 and "No changes need to be applied" in again.stdout, again.stdout + again.stderr


def test_the_last_control_plane_group_cannot_be_removed(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any]
) -> None:
    before = keys(boto, env)
    r = run_kopsy(["delete", "instancegroup", CP, "--name", NAME, "--yes"], env)
    assert r.returncode == 2 and "would leave 0 control-plane group(s)" in r.stderr, r.stderr
    assert keys(boto, env) == before


@pytest.mark.parametrize("swap", [("pki/ca.crt",), ("pki/ca.crt", "pki/ca.key")])
def test_a_ca_that_is_not_the_clusters_is_refused_before_anything_is_applied(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path, swap: tuple[str, ...]
) -> None:
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr
    create_cluster(run_kopsy, env, OTHER, ssh_keypair[1], cluster)
    s3 = boto("s3")
    for rel in swap:
        data = s3.get_object(Bucket=bucket(env), Key=f"{OTHER}/{rel}")["Body"].read()
        s3.put_object(Bucket=bucket(env), Key=f"{NAME}/{rel}", Body=data)
    (tmp_path / "calls.log").unlink()
    line = error_line(run_kopsy(["update", "cluster", NAME, "--yes"], env))
    if len(swap) == 1:
        assert "pki/ca.key" in line and "does not match" in line, line
    else:
        assert "running launch template" in line and "pki/ca.crt" in line, line
    assert not mutating(calls(tmp_path / "calls.log"))


def _set_config_base(boto: Callable[[str], Any], env: dict[str, str], value: str) -> None:
    s3 = boto("s3")
    key = f"{NAME}/config"
    text = s3.get_object(Bucket=bucket(env), Key=key)["Body"].read().decode()
    assert "configBase:" in text
    lines = [f"  configBase: {value}" if line.strip().startswith("configBase:") else line for line in text.splitlines()]
    s3.put_object(Bucket=bucket(env), Key=key, Body=("\n".join(lines) + "\n").encode())


def test_a_config_base_naming_another_store_is_refused(
    env: dict[str, str], cluster: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any], tmp_path: Path
) -> None:
    _set_config_base(boto, env, f"s3://someone-elses-bucket/{NAME}")
    line = error_line(run_kopsy(["update", "cluster", NAME, "--yes"], env))
    assert "spec.configBase says 's3://someone-elses-bucket/" in line and f"{env['KOPSY_STATE_STORE']}/{NAME}" in line, line
    assert not mutating(calls(tmp_path / "calls.log"))
    assert total(owned_resources(boto, NAME)) == 0


def test_a_file_store_whose_config_base_says_s3_is_refused(
    env: dict[str, str], boto: Callable[[str], Any], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    root = tmp_path / "store"
    local = {**env, "KOPSY_STATE_STORE": f"file://{root}"}
    image = register_image(boto)
    create_cluster(run_kopsy, local, NAME, ssh_keypair[1], image)
    config = root / NAME / "config"
    config.write_text(config.read_text().replace(f"configBase: file://{root}/{NAME}", f"configBase: {env['KOPSY_STATE_STORE']}/{NAME}"))
    assert env["KOPSY_STATE_STORE"] in config.read_text()
    line = error_line(run_kopsy(["update", "cluster", NAME, "--yes"], local))
    assert "spec.configBase says" in line, line
    assert not mutating(calls(tmp_path / "calls.log"))
    assert total(owned_resources(boto, NAME)) == 0

"""The commands that change a cluster's spec keep the store's read cache current
(``ClusterStore.read_spec``, ``save_reads``): after ``create -f``, ``edit ig`` or ``replace -f``
the next update reads the spec in the same S3 calls as after a plain ``create cluster``, instead
of one more read per changed object, and plans from the bytes the command wrote."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import calls, create_cluster, register_image

pytestmark = pytest.mark.e2e

NAME = "edits.example.com"
GROUP = (
    "apiVersion: kopsy.io/v1alpha1\nkind: InstanceGroup\n"
    f"metadata: {{name: extra, labels: {{kopsy.io/cluster: {NAME}}}}}\n"
    "spec: {role: Node, machineType: t3.medium, image: IMAGE, minSize: 1, maxSize: 1, subnets: [us-east-1a]}\n"
)


def _plan(run_kopsy: Callable[..., Any], env: dict[str, str], log: Path) -> tuple[str, int]:
    """A dry-run update's output and how many S3 objects it read."""
    log.unlink(missing_ok=True)
    r = run_kopsy(["update", "cluster", NAME], {**env, "KOPSY_AWS_CALL_LOG": str(log)})
    assert r.returncode == 0, r.stderr
    return r.stdout, calls(log).count(("s3", "GetObject"))


def test_spec_changes_reach_the_read_cache(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    image = register_image(boto)
    group = GROUP.replace("IMAGE", image)
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)
    log = tmp_path / "calls.log"
    _, after_create = _plan(run_kopsy, env, log)
    assert after_create == 1  # create wrote the cache: the spec comes in one read

    (tmp_path / "extra.yaml").write_text(group)
    assert run_kopsy(["create", "-f", str(tmp_path / "extra.yaml")], env).returncode == 0
    plan, reads = _plan(run_kopsy, env, log)
    assert "AutoScalingGroup/extra" in plan and reads == after_create, plan

    editor = tmp_path / "editor.py"
    editor.write_text("import pathlib, sys\np = pathlib.Path(sys.argv[1])\n"
                      "p.write_text(p.read_text().replace('maxSize: 1', 'maxSize: 4'))\n")
    r = run_kopsy(["edit", "ig", "extra", "--name", NAME], {**env, "EDITOR": f'"{sys.executable}" "{editor}"'})
    assert r.returncode == 0, r.stderr
    plan, reads = _plan(run_kopsy, env, log)
    assert "max_size" in plan and "4" in plan and reads == after_create, plan

    (tmp_path / "extra.yaml").write_text(group.replace("maxSize: 1", "maxSize: 6"))
    assert run_kopsy(["replace", "-f", str(tmp_path / "extra.yaml")], env).returncode == 0
    plan, reads = _plan(run_kopsy, env, log)
    assert "6" in plan and reads == after_create, plan


def test_commands_that_read_the_spec_read_it_through_the_cache(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    """``get instances`` (like validate, rolling-update, upgrade and backup) reads the config and
    every group: one listing and the cache, not the config, a listing and each group."""
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    log = tmp_path / "calls.log"
    r = run_kopsy(["get", "instances", NAME, "--no-ssh"], {**env, "KOPSY_AWS_CALL_LOG": str(log)})
    assert r.returncode == 0, r.stderr
    s3 = [op for service, op in calls(log) if service == "s3"]
    assert sorted(s3) == ["GetObject", "ListObjectsV2"], s3

"""An instance group's ``nodeLabels`` and ``taints`` take effect in AWS: cluster-autoscaler's
node-template tags on its Auto Scaling group follow the spec, and node groups carry the
auto-discovery tags (the user-data side is covered by tests/bootstrap)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_update_support import create_cluster, register_image

pytestmark = pytest.mark.e2e

NAME = "labels.example.com"
CA = "k8s.io/cluster-autoscaler/"


def _asg_tags(boto: Callable[[str], Any], group: str) -> dict[str, tuple[str, bool]]:
    g = boto("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0]
    return {t["Key"]: (t["Value"], t["PropagateAtLaunch"]) for t in g["Tags"] if t["Key"].startswith(CA)}


def _set_nodes(run_kopsy: Callable[..., Any], env: dict[str, str], tmp_path: Path, labels: dict, taints: list) -> None:
    got = run_kopsy(["get", "ig", "nodes", "-o", "yaml"], env)
    assert got.returncode == 0, got.stderr
    doc = yaml.safe_load(got.stdout)
    doc = doc[0] if isinstance(doc, list) else doc
    doc["spec"]["nodeLabels"], doc["spec"]["taints"] = labels, taints
    (tmp_path / "nodes.yaml").write_text(yaml.safe_dump(doc))
    r = run_kopsy(["replace", "-f", str(tmp_path / "nodes.yaml")], env)
    assert r.returncode == 0, r.stderr


def test_labels_and_taints_become_autoscaler_tags_and_follow_the_spec(
    aws_env: dict[str, str], state_bucket: str, tmp_path: Path, boto: Callable[[str], Any],
    run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], register_image(boto))
    _set_nodes(run_kopsy, env, tmp_path, {"example.com/pool": "general"}, ["dedicated=general:NoSchedule"])
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 0
    assert _asg_tags(boto, f"nodes.{NAME}") == {
        f"{CA}enabled": ("1", False),
        f"{CA}{NAME}": ("owned", False),
        f"{CA}node-template/label/example.com/pool": ("general", False),
        f"{CA}node-template/taint/dedicated": ("general:NoSchedule", False),
    }
    assert _asg_tags(boto, f"control-plane-us-east-1a.{NAME}") == {}  # fixed at one: not the autoscaler's

    # A changed label and a removed taint: the tags follow, and a second update is a no-op.
    _set_nodes(run_kopsy, env, tmp_path, {"example.com/pool": "batch"}, [])
    plan = run_kopsy(["update", "cluster", NAME], env)
    assert "autoscaler_tags" in plan.stdout and "LaunchTemplate/nodes" in plan.stdout, plan.stdout
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 0
    assert _asg_tags(boto, f"nodes.{NAME}") == {
        f"{CA}enabled": ("1", False),
        f"{CA}{NAME}": ("owned", False),
        f"{CA}node-template/label/example.com/pool": ("batch", False),
    }
    again = run_kopsy(["update", "cluster", NAME], env)
    assert "No changes need to be applied" in again.stdout, again.stdout
    assert run_kopsy(["delete", "cluster", NAME, "--yes"], env).returncode == 0

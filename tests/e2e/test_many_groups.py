"""A cluster with more instance groups than one describe page holds still converges.

moto's DescribeLaunchTemplates answers 15 templates and no NextToken unless MaxResults is given;
AWS pages too. With 20 groups, a second update must find all 20 templates and plan nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_update_support import calls, create_cluster, mutating, register_image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "many.example.com"
GROUPS = 20


def _extra_groups(image: str, count: int) -> str:
    docs = [
        {
            "apiVersion": "kopsy.io/v1alpha1",
            "kind": "InstanceGroup",
            "metadata": {"name": f"pool-{i:02d}", "labels": {"kopsy.io/cluster": NAME}},
            "spec": {"role": "Node", "machineType": "t3.small", "minSize": 0, "maxSize": 1,
                     "subnets": ["us-east-1a"], "image": image},
        }
        for i in range(count)
    ]
    return yaml.safe_dump_all(docs)


def test_twenty_instance_groups_converge_and_the_second_update_is_a_no_op(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path], tmp_path: Path,
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket, "KOPSY_AWS_CALL_LOG": str(tmp_path / "calls.log")}
    image = register_image(boto)
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image)  # control plane + nodes
    extra = tmp_path / "groups.yaml"
    extra.write_text(_extra_groups(image, GROUPS - 2))
    r = run_kopsy(["create", "-f", str(extra)], env)
    assert r.returncode == 0, r.stderr

    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stdout + r.stderr

    owner = [{"Name": f"tag:kubernetes.io/cluster/{NAME}", "Values": ["owned"]}]
    ec2, asg = boto("ec2"), boto("autoscaling")
    templates = ec2.describe_launch_templates(Filters=owner, MaxResults=200)["LaunchTemplates"]
    assert len(templates) == GROUPS
    groups = asg.describe_auto_scaling_groups(MaxRecords=100)["AutoScalingGroups"]
    assert len([g for g in groups if g["AutoScalingGroupName"].endswith(NAME)]) == GROUPS

    log = tmp_path / "calls.log"
    log.unlink()
    again = run_kopsy(["update", "cluster", NAME, "--detailed-exitcode"], env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "No changes need to be applied" in again.stdout
    assert "Will create" not in again.stdout
    assert mutating(calls(log)) == []
    # the templates were asked for in pages large enough to hold them all
    assert ("ec2", "DescribeLaunchTemplates") in calls(log)

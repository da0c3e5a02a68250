"""The API path a real cluster depends on: the control plane must reach itself through the NLB,
and exactly one control-plane group runs ``kubeadm init``."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_update_support import create_cluster, register_image

from kopsy.bootstrap import parse_user_data

pytestmark = pytest.mark.e2e

NAME = "ha.example.com"


def test_ha_cluster_has_one_init_control_plane_and_no_hairpin_drop(
    aws_env: dict[str, str], state_bucket: str, boto: Callable[[str], Any], run_kopsy: Callable[..., Any],
    ssh_keypair: tuple[Path, Path],
) -> None:
    env = {**aws_env, "KOPSY_STATE_STORE": state_bucket}
    image = register_image(boto)
    # Control planes deliberately not in the first zone: the init group must still be chosen.
    create_cluster(run_kopsy, env, NAME, ssh_keypair[1], image, "--control-plane-count", "3",
                   "--control-plane-zones", "us-east-1b")
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 0, r.stderr

    elb = boto("elbv2")
    groups = [tg for tg in elb.describe_target_groups()["TargetGroups"] if tg["Port"] == 6443]
    assert len(groups) == 2  # behind the internet-facing load balancer and behind the internal one
    for group in groups:
        attrs = {a["Key"]: a["Value"] for a in elb.describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])["Attributes"]}
        assert attrs["preserve_client_ip.enabled"] == "false"
        assert attrs["deregistration_delay.timeout_seconds"] == "30"
        assert attrs["deregistration_delay.connection_termination.enabled"] == "true"
        assert (group["HealthCheckIntervalSeconds"], group["HealthyThresholdCount"], group["UnhealthyThresholdCount"]) == (10, 2, 2)
    for lb in elb.describe_load_balancers()["LoadBalancers"]:
        lb_attrs = {a["Key"]: a["Value"] for a in elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])["Attributes"]}
        assert lb_attrs["load_balancing.cross_zone.enabled"] == "true", lb["Scheme"]

    ec2 = boto("ec2")
    modes = {}
    for lt in ec2.describe_launch_templates()["LaunchTemplates"]:
        data = ec2.describe_launch_template_versions(LaunchTemplateId=lt["LaunchTemplateId"], Versions=["$Latest"])
        user_data = base64.b64decode(data["LaunchTemplateVersions"][0]["LaunchTemplateData"]["UserData"])
        modes[lt["LaunchTemplateName"]] = parse_user_data(user_data).mode
    assert sorted(modes.values()) == ["init", "join", "join-control-plane", "join-control-plane"], modes

    # A rerun sees the attribute as applied: nothing to change.
    r = run_kopsy(["update", "cluster", NAME], env)
    assert "No changes need to be applied" in r.stdout, r.stdout

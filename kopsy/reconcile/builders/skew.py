"""Kubelet version skew during an upgrade: nodes wait for the control planes (the instance
groups builder's one fact, read before building; it lives here as it names launch templates).

The Kubernetes skew policy forbids kubelets newer than the API servers. kops (PR #16932) keeps
node and bastion launch templates on the version the control planes *run* until every
control plane runs the spec's version; ``update`` asks this module which version that is.

Cheap when nothing is being upgraded: the launch templates' latest user-data (already in the
plan's facts) all carry the spec's version, and no further call is made. Only while they
differ does it read the groups and the launch-template versions the running control planes
were launched from (three batched calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kopsy.bootstrap import parse_user_data
from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.groups import read_groups
from kopsy.cloud.aws.names import asg_name
from kopsy.cloud.aws.session import aws_errors
from kopsy.errors import KopsyError
from kopsy.reconcile.values import Actual
from kopsy.spec.model import InstanceGroup
from kopsy.spec.versions import parse_version


def rendered_version(user_data: Any) -> str:
    """The kubernetesVersion a launch template's user-data installs ("" when unreadable)."""
    if not isinstance(user_data, bytes) or not user_data:
        return ""
    try:
        return parse_user_data(user_data).kubernetesVersion.lstrip("v")
    except (KopsyError, ValueError, TypeError):
        return ""


def node_version(clients: Any, cluster: str, spec_version: str, igs: Sequence[InstanceGroup],
                 facts: Mapping[str, list[Actual]]) -> str | None:
    """The version node and bastion templates must keep, or None when they may take the spec's."""
    want = spec_version.lstrip("v")
    templates = {a.name: a for a in facts.get("LaunchTemplate", [])}
    seen = {rendered_version(templates[n].fields.get("user_data")) for n in (asg_name(ig.name, cluster) for ig in igs)
            if n in templates}
    if seen <= {want, ""}:
        return None
    running = running_versions(clients, cluster, [ig for ig in igs if ig.is_control_plane])
    if not running or running == {want}:
        return None
    return min(running, key=lambda s: parse_version(s) or (0, 0, 0))


def running_versions(clients: Any, cluster: str, igs: Sequence[InstanceGroup]) -> set[str]:
    """The kubernetesVersions the in-service instances of ``igs`` run: what the launch-template
    versions they were launched from install (two reads, then one call per group). Also what
    ``upgrade --roll`` reads to tell an unfinished upgrade from a finished one."""
    import base64

    inv = read_groups(clients, cluster)
    groups = [g for g in (inv.groups.get(asg_name(ig.name, cluster)) for ig in igs) if g]
    running: set[str] = set()
    ec2 = clients.client("ec2")
    for g in groups:
        wanted = sorted({m.launch_template_version for m in g.members if m.lifecycle == "InService" and m.launch_template_version})
        if not wanted:
            continue
        with aws_errors(f"reading the launch-template versions the instances of {cluster} run"):
            versions = describe_all(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                                    LaunchTemplateName=g.launch_template, Versions=wanted)
        for v in versions:
            raw = (v.get("LaunchTemplateData") or {}).get("UserData")
            if raw:
                running.add(rendered_version(base64.b64decode(raw)))
    running.discard("")
    return running

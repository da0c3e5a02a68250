"""Cluster ownership tags: the one way kopsy recognises its own resources.

Every resource carries the kops-compatible ownership tag ``kubernetes.io/cluster/<name>=owned``
plus ``KubernetesCluster``, ``kopsy.io/cluster``, ``Name`` and (where it has one) ``kopsy.io/role``.

Two notions follow (docs/update.md, "What kopsy manages"): the cluster *owns* everything with the
ownership tag, Kubernetes' controllers' resources included, and ``delete`` sweeps all of it;
kopsy *manages* only what also carries ``kopsy.io/cluster``, and ``update`` plans only that.
Discovery filters on the ownership tag *key*, which embeds the full cluster name, so
``a.example.com`` never matches ``a.example.com.staging`` and ``shared`` resources never match.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

OWNED = "owned"
TAG_CLUSTER = "kopsy.io/cluster"
TAG_ROLE = "kopsy.io/role"
TAG_INSTANCE_GROUP = "kopsy.io/instancegroup"
TAG_KUBERNETES_CLUSTER = "KubernetesCluster"

ROLE_API = "api"  # the internet-facing API load balancer (admins, kubectl)
ROLE_API_INTERNAL = "api-internal"  # the internal one (kubelets, kubeadm, in-cluster clients)

# EC2 puts these on instances launched from a launch template (an Auto Scaling group's too).
TAG_LAUNCH_TEMPLATE_ID = "aws:ec2launchtemplate:id"
TAG_LAUNCH_TEMPLATE_VERSION = "aws:ec2launchtemplate:version"
TAG_ASG_NAME = "aws:autoscaling:groupName"  # Auto Scaling tags each member with its group's name


def ownership_key(cluster: str) -> str:
    return f"kubernetes.io/cluster/{cluster}"


def cluster_tags(cluster: str, name: str, role: str = "", **extra: str) -> dict[str, str]:
    """The tags every kopsy resource of ``cluster`` carries."""
    tags = {
        ownership_key(cluster): OWNED,
        TAG_KUBERNETES_CLUSTER: cluster,
        TAG_CLUSTER: cluster,
        "Name": name,
    }
    if role:
        tags[TAG_ROLE] = role
    tags.update(extra)
    return tags


def owner_filter(cluster: str) -> list[dict[str, Any]]:
    """An EC2/ASG describe filter matching exactly the resources owned by ``cluster``."""
    return [{"Name": f"tag:{ownership_key(cluster)}", "Values": [OWNED]}]


def cluster_filter(cluster: str) -> list[dict[str, Any]]:
    """An EC2/ASG describe filter matching the resources carrying kopsy's own cluster tag."""
    return [{"Name": f"tag:{TAG_CLUSTER}", "Values": [cluster]}]


def is_owned(tags: Mapping[str, str], cluster: str) -> bool:
    """The cluster owns it: kopsy's resources, and what Kubernetes' controllers made for it."""
    return tags.get(ownership_key(cluster)) == OWNED


def belongs(tags: Mapping[str, str], cluster: str) -> bool:
    """Tagged for the cluster by either scheme: the ownership tag, or the older
    ``KubernetesCluster=<name>`` that controllers still put on what they create when the
    instances carry it (the EBS CSI driver's ``--extra-tags``). What ``delete`` sweeps."""
    return is_owned(tags, cluster) or tags.get(TAG_KUBERNETES_CLUSTER) == cluster


def legacy_filter(cluster: str) -> list[dict[str, Any]]:
    """A describe filter for the ``KubernetesCluster=<name>`` scheme."""
    return [{"Name": f"tag:{TAG_KUBERNETES_CLUSTER}", "Values": [cluster]}]


def is_managed(tags: Mapping[str, str], cluster: str) -> bool:
    """kopsy manages it: it carries kopsy's own mark as well as the ownership tag. Only these are
    planned by ``update`` or adopted by a create; what the cloud-controller-manager or the EBS
    CSI driver made under the ownership tag is the cluster's, not kopsy's to change."""
    return is_owned(tags, cluster) and tags.get(TAG_CLUSTER) == cluster


def to_dict(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    """AWS ``[{"Key":..,"Value":..}]`` to a plain dict."""
    return {str(t["Key"]): str(t.get("Value", "")) for t in (tags or [])}


def to_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def tag_spec(resource_type: str, tags: Mapping[str, str]) -> list[dict[str, Any]]:
    """EC2 ``TagSpecifications``: tags applied atomically at creation, so a crash right after a
    create never leaves an untagged (undiscoverable, hence duplicated or leaked) resource."""
    return [{"ResourceType": resource_type, "Tags": to_list(tags)}]

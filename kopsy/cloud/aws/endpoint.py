"""Find a cluster's API endpoint: the DNS name of the NLB tagged as its API load balancer.

Tags, not names, identify it (the cluster's ownership tag and the API role tag, see ``tags``),
so it is found even when the state store is gone or the name was shortened. ELBv2 cannot filter
describes by tag: one paginated DescribeLoadBalancers, then DescribeTags in batches of 20 (the
API's maximum), then a pure choice (``pick_api_endpoint``). Read-only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.ec2util import describe_all
from kopsy.cloud.aws.session import aws_errors

TAG_BATCH = 20  # DescribeTags accepts at most 20 ARNs
_STATE_ORDER = {"active": 0, "active_impaired": 1, "provisioning": 2}


def pick_api_endpoint(
    load_balancers: Iterable[tuple[dict[str, Any], dict[str, str]]], cluster_name: str, role: str = T.ROLE_API
) -> str | None:
    """The DNS name of the cluster's API NLB of ``role`` among (description, tags) pairs, or None:
    by default the internet-facing one admins use (``T.ROLE_API_INTERNAL``: the instances' one).

    If a failed run left more than one, prefer a usable state, then the oldest (the one the
    existing instances were most likely given), so every caller picks the same one.
    """
    owned = [
        lb
        for lb, tags in load_balancers
        if T.is_owned(tags, cluster_name)
        and tags.get(T.TAG_ROLE) == role
        and lb.get("State", {}).get("Code", "active") in _STATE_ORDER
        and lb.get("DNSName")
    ]
    if not owned:
        return None
    owned.sort(key=lambda lb: (_STATE_ORDER[lb.get("State", {}).get("Code", "active")], str(lb.get("CreatedTime", ""))))
    return str(owned[0]["DNSName"])


def find_api_endpoint(clients: Any, cluster_name: str) -> str | None:
    """The API NLB's DNS name for ``cluster_name`` (``clients`` is an ``AwsClients``), or None."""
    elb = clients.client("elbv2")
    with aws_errors(f"looking up the API load balancer of cluster {cluster_name}"):
        lbs = describe_all(elb, "describe_load_balancers", "LoadBalancers")
        network = [lb for lb in lbs if lb.get("Type", "network") == "network"]
        tags: dict[str, dict[str, str]] = {}
        arns = [lb["LoadBalancerArn"] for lb in network]
        for start in range(0, len(arns), TAG_BATCH):
            for desc in elb.describe_tags(ResourceArns=arns[start : start + TAG_BATCH])["TagDescriptions"]:
                tags[desc["ResourceArn"]] = T.to_dict(desc.get("Tags"))
    return pick_api_endpoint(((lb, tags.get(lb["LoadBalancerArn"], {})) for lb in network), cluster_name)

"""The deterministic names of a cluster's AWS resources: one home, so every reader agrees.

Names follow kops (``<ig>.<cluster>``, ``control-plane.<cluster>``) and never change for a
given spec, so a rerun finds what an earlier, maybe interrupted, run created, and validate,
the sandbox and day-2 commands find the same groups update made. AWS limits some names (load
balancers and target groups: 32 characters); those are shortened with a stable hash.
"""

from __future__ import annotations

import base64
import hashlib
import re

from kopsy.errors import KopsyError

ELB_NAME_LIMIT = 32


def role_name(role: str, cluster: str) -> str:
    """The IAM role, and the instance profile of the same name: ``control-plane.<cluster>``, ``nodes.<cluster>``."""
    return f"{role}.{cluster}"


def security_group_name(role: str, cluster: str) -> str:
    """A security group: ``control-plane.<cluster>``, ``nodes.<cluster>``, ``api-elb.<cluster>``."""
    return f"{role}.{cluster}"


def subnet_name(subnet: str, cluster: str) -> str:
    """A subnet of the spec: ``<subnet>.<cluster>``."""
    return f"{subnet}.{cluster}"


def nat_name(utility_subnet: str, cluster: str) -> str:
    """A Utility subnet's NAT gateway and its Elastic IP: ``<utility subnet>.<cluster>``."""
    return f"{utility_subnet}.{cluster}"


def private_route_table_name(nat_subnet: str, cluster: str) -> str:
    """The route table of the Private subnets that go out through one NAT gateway: ``private-<utility subnet>.<cluster>``."""
    return f"private-{nat_subnet}.{cluster}"


def shared_tag_name(resource_id: str) -> str:
    """The cluster's ``shared`` tag on an existing resource (a VPC, a subnet): ``shared:<id>``
    (one per resource: the cluster is in the tag's key)."""
    return f"shared:{resource_id}"


def asg_name(ig_name: str, cluster: str) -> str:
    """An instance group's Auto Scaling group and launch template: ``<ig>.<cluster>``, as in kops."""
    return f"{ig_name}.{cluster}"


def api_name(cluster: str) -> str:
    """The API load balancer and its target group, by their Name tag: ``api.<cluster>``."""
    return f"api.{cluster}"


def api_internal_name(cluster: str) -> str:
    """The internal API load balancer in-cluster clients use, and its target group: ``api-internal.<cluster>``."""
    return f"api-internal.{cluster}"


def listener_name(load_balancer: str, port: int) -> str:
    """A load balancer's listener on ``port``, by the load balancer's Name tag: ``api.<cluster>:443``."""
    return f"{load_balancer}:{port}"


def elb_name(prefix: str, cluster: str, limit: int = ELB_NAME_LIMIT) -> str:
    """``api-demo-example-com``; shortened with a stable hash when over the 32-character limit."""
    base = re.sub(r"[^A-Za-z0-9-]", "-", f"{prefix}-{cluster}").strip("-")
    if len(base) <= limit:
        return base
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:8]
    return f"{base[: limit - 9].rstrip('-')}-{digest}"


def fingerprint(public_key: str) -> str:
    """The OpenSSH MD5 fingerprint (``aa:bb:...``) of an ``ssh-xxx AAAA... comment`` line."""
    parts = public_key.strip().split()
    if len(parts) < 2:
        raise KopsyError("the cluster's SSH public key (ssh/public/admin) is not an OpenSSH public key line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise KopsyError("the cluster's SSH public key (ssh/public/admin) is not valid base64") from exc
    digest = hashlib.md5(blob).hexdigest()  # noqa: S324 - a fingerprint, as ssh-keygen -E md5 and kops use
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def key_pair_name(cluster: str, public_key: str) -> str:
    """``kubernetes.<cluster>-<md5 fingerprint>``, like kops: a new key gets a new name, so a key
    rotation is a create plus a delete rather than an in-place change EC2 cannot do."""
    return f"kubernetes.{cluster}-{fingerprint(public_key)}"

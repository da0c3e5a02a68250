"""From a cluster spec to the list of AWS resources it needs (``Desired`` values).

Pure: everything that needs AWS (the AMI of each group) comes in through ``ClusterInputs``.
Names are deterministic and kops-like, so the same spec always maps to the same resources and
a rerun finds what an earlier (maybe interrupted) run created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kopsy.reconcile.builders import BUILDERS
from kopsy.reconcile.values import Desired
from kopsy.spec.model import Cluster, InstanceGroup

if TYPE_CHECKING:
    from kopsy.state.clusters import Listing


@dataclass
class ClusterInputs:
    """Everything the desired state depends on, read before planning."""

    cluster: Cluster
    instance_groups: list[InstanceGroup]
    ssh_public_key: str  # OpenSSH public key line; "" for no key pair
    ca_cert_hash: str  # sha256:<hex> of the cluster CA's SubjectPublicKeyInfo
    state_store_url: str  # URL of the cluster's prefix in the state store
    images: dict[str, str] = field(default_factory=dict)  # instance group -> AMI id
    partition: str = "aws"
    state_kms_key: str = ""  # ARN of the customer KMS key the state bucket encrypts with ("" for none)
    # render_user_data(cluster, ig, *, api_endpoint, ca_cert_hash, state_store_url) -> bytes;
    # None means kopsy.bootstrap's renderer (golden tests pass a fixed one).
    renderer: Callable[..., bytes] | None = None
    # spec.networkID: the existing VPC's attached internet gateway (read at plan time), which the
    # route table of kopsy's own public subnets points at
    internet_gateway: str = ""
    # The version node and bastion groups render while control planes still run an older one
    # (``kopsy.reconcile.builders.skew``); "" means the spec's.
    node_version: str = ""
    # The cluster's state-store listing the inputs were read with (``ClusterStore.listing``), for
    # the other parts of the cluster ``update`` reads (removal records, addons, the etcd module).
    listing: Listing | None = None


def desired_resources(inp: ClusterInputs) -> list[Desired]:
    """Every resource the spec needs, area by area (``kopsy/reconcile/builders/``), with the
    spec's ``cloudLabels``."""
    return with_cloud_labels([d for build in BUILDERS for d in build(inp)], inp.cluster.cloud_labels)


def with_cloud_labels(resources: list[Desired], labels: dict[str, str]) -> list[Desired]:
    """The spec's ``cloudLabels`` on every resource and on the instances the templates launch;
    kopsy's own tags win (validation refuses labels that would shadow them)."""
    if not labels:
        return resources
    for d in resources:
        d.tags = {**labels, **d.tags}
        if isinstance(d.fields.get("instance_tags"), dict):
            d.fields["instance_tags"] = {**labels, **d.fields["instance_tags"]}
    return resources

"""The ``update`` pipeline without the CLI: read inputs, gather facts, plan, apply.

Each stage is separate (plan, show, confirm, apply) and the plan is always built from facts
read just now, never from a saved plan, so what is applied matches the cloud as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kopsy.cloud.aws.bucketkms import state_bucket_kms_key
from kopsy.cloud.aws.images import architecture, resolve_image
from kopsy.parallel import parallel
from kopsy.reconcile.values import Actual, ApplyContext, Key
from kopsy.cloud.aws.session import AwsClients
from kopsy.errors import ObjectNotFound, StateStoreError
from kopsy.reconcile.apply import ApplyResult, Event, apply_plan
from kopsy.reconcile.changes import Plan
from kopsy.reconcile.desired import ClusterInputs, desired_resources
from kopsy.reconcile.planner import diff, gather_facts
from kopsy.spec.model import InstanceGroup


def ca_hash(ca_cert_pem: bytes) -> str:
    from kopsy.pki import ca_cert_hash

    return ca_cert_hash(ca_cert_pem)


def read_inputs(store: Any, cluster_name: str) -> ClusterInputs:
    """Read the spec, instance groups, admin SSH key and CA from the state store
    (``store`` is a ``kopsy.state.clusters.ClusterStore``). AMIs are resolved later, while the
    facts are being read (``plan_update``)."""

    def ssh_key() -> str:
        try:
            data = store.get_object(cluster_name, "ssh/public/admin")
        except ObjectNotFound:
            return ""
        try:
            return str(data.decode("ascii").strip())
        except UnicodeDecodeError:
            raise StateStoreError(
                f"{cluster_name}/ssh/public/admin in the state store is not an OpenSSH public key (not text); "
                f"replace it with the cluster admin's public key (a line like 'ssh-ed25519 AAAA...')"
            ) from None

    def instance_groups() -> list[tuple[InstanceGroup, str]]:
        # The documented layout (<cluster>/instancegroup/<name>), read in parallel: a cluster
        # with 13 groups then costs two round trips, not fourteen.
        prefix = f"{cluster_name}/instancegroup/"
        names = sorted(k[len(prefix):] for k in store.store.list(prefix) if "/" not in k[len(prefix):])
        return parallel(lambda n: store.get_instance_group(cluster_name, n), names, workers=16)

    # Independent reads: one round trip instead of four in sequence.
    cluster_etag, ig_list, key, ca = parallel(
        lambda f: f(),
        [lambda: store.get_cluster(cluster_name), instance_groups, ssh_key, lambda: store.get_object(cluster_name, "pki/ca.crt")],
    )
    cluster = cluster_etag[0]
    state_url = cluster.config_base or store.store.url_for(cluster_name)
    return ClusterInputs(cluster, [ig for ig, _ in ig_list], key, ca_hash(ca), state_url)


def resolve_images(clients: AwsClients, igs: list[InstanceGroup]) -> dict[str, str]:
    """Instance group -> AMI id; each distinct (image, architecture) is looked up once."""
    cache: dict[tuple[str, str], str] = {}
    images: dict[str, str] = {}
    for ig in igs:
        k = (ig.image, architecture(ig.machine_type) if not ig.image.startswith("ami-") else "")
        if k not in cache:
            cache[k] = resolve_image(clients, ig.image, ig.machine_type)
        images[ig.name] = cache[k]
    return images


@dataclass
class Planned:
    plan: Plan
    facts: dict[str, list[Actual]]

    def outputs(self) -> dict[Key, dict[str, Any]]:
        """Known outputs of existing resources, the starting point of an apply."""
        return {a.key: dict(a.outputs) for items in self.facts.values() for a in items}


def plan_update(clients: AwsClients, inputs: ClusterInputs) -> Planned:
    """Fresh facts and the plan. AMI lookups (read-only too) overlap with the facts."""
    missing = [ig for ig in inputs.instance_groups if ig.name not in inputs.images]
    facts, images, kms_key = parallel(
        lambda f: f(),
        [
            lambda: gather_facts(clients, inputs.cluster.name),
            lambda: resolve_images(clients, missing),
            lambda: state_bucket_kms_key(clients, inputs.state_store_url),
        ],
    )
    inputs = replace(inputs, images={**inputs.images, **images}, state_kms_key=kms_key)
    return Planned(diff(inputs.cluster.name, desired_resources(inputs), facts), facts)


def apply_update(
    clients: AwsClients, planned: Planned, *, workers: int = 16, retry_timeout: float = 300.0, on_event: Event | None = None
) -> ApplyResult:
    ctx = ApplyContext(clients, planned.plan.cluster, retry_timeout=retry_timeout)
    return apply_plan(planned.plan, ctx, outputs=planned.outputs(), workers=workers, on_event=on_event)

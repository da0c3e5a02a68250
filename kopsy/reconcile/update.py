"""The ``update`` pipeline without the CLI: read inputs, gather facts, plan, apply.

Each stage is separate (plan, show, confirm, apply) and the plan is always built from facts
read just now, never from a saved plan, so what is applied matches the cloud as it is.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kopsy.cloud.aws import tags as T
from kopsy.cloud.aws.bucketkms import state_bucket_kms_key
from kopsy.cloud.aws.images import architecture, resolve_image
from kopsy.cloud.aws.session import AwsClients
from kopsy.errors import CloudError, KopsyError, StateStoreError
from kopsy.parallel import MAX_IN_FLIGHT, parallel
from kopsy.reconcile.apply import ApplyResult, Event, apply_plan
from kopsy.reconcile.changes import Plan
from kopsy.reconcile.desired import ClusterInputs, desired_resources
from kopsy.reconcile.planner import diff, gather_facts, managed_only
from kopsy.reconcile.values import Actual, ApplyContext, Key
from kopsy.spec.model import ROLE_CONTROL_PLANE, Cluster, InstanceGroup
from kopsy.spec.validation import CONTROL_PLANE_COUNTS

if TYPE_CHECKING:
    from kopsy.state.clusters import Listing


def ca_hash(ca_cert_pem: bytes) -> str:
    from kopsy.pki import ca_cert_hash

    return ca_cert_hash(ca_cert_pem)


RESTORE_HINT = (
    "restore them from S3 versioning (aws s3api list-object-versions, then copy the last good version back) "
    "or with 'kopsy create -f' from 'kopsy get ... -o yaml' output kept in a backup"
)


def _missing(store: Any, cluster_name: str, rel: str) -> StateStoreError:
    where = store.url_for(cluster_name, rel)
    if rel == "ssh/public/admin":
        return StateStoreError(
            f"{where} is missing from the state store (every cluster has an admin SSH key); nothing was changed; "
            f"restore it from S3 versioning or put the cluster admin's public key line there"
        )
    return StateStoreError(
        f"{where} (the cluster CA) is missing from the state store; nothing was "
        f"changed; restore it from S3 versioning or a backup: a new CA would cut off every running instance"
    )


def _ssh_key_line(data: bytes) -> str:
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        return ""


def _checked_ssh_key(store: Any, cluster_name: str, data: bytes) -> str:
    """The admin key line, refused (as ``create`` refuses it) unless it parses."""
    from kopsy.errors import SpecInvalid
    from kopsy.spec.sshkey import parse_ssh_public_key

    try:
        return parse_ssh_public_key(_ssh_key_line(data), store.url_for(cluster_name, "ssh/public/admin"))
    except SpecInvalid as exc:
        raise StateStoreError(
            f"{exc.problems[0] if exc.problems else store.url_for(cluster_name, 'ssh/public/admin')} (in the state store); "
            f"replace it with the cluster admin's public key (a line like 'ssh-ed25519 AAAA...')"
        ) from None


def _checked_ca_hash(cert: bytes, key: bytes) -> str:
    """The CA hash instances pin, after checking that ``pki/ca.crt`` and ``pki/ca.key`` are one pair."""
    from kopsy.pki import load_ca_pair

    load_ca_pair(cert, key)
    return ca_hash(cert)


def _stored_key_and_ca(store: Any, cluster_name: str, listing: Listing, *, write_record: bool = True) -> tuple[str, str]:
    """The admin SSH key line and the CA hash, checked.

    The SSH key (which user-data needs) and ``pki/verified.json`` are read in one round trip
    (from the read cache when the listing vouches for them). While the record holds the CA
    certificate's and key's listed ETags and the SSH key's digest (``kopsy.pki.verified``), its
    CA hash is used: the CA and its key are not even read, and ``cryptography`` is never
    imported. Otherwise all three are read and checked again and a fresh record is written
    (best effort: it is only a cache, so a store that refuses the write just means the next run
    checks again). ``write_record`` False (a dry run) writes nothing: a dry run changes no object."""
    from kopsy.pki import verified

    def read(rel: str) -> tuple[bytes, str] | None:
        got = store.read_object(cluster_name, rel, listing)
        return None if got is None else (got.data, got.etag)

    order = ("ssh/public/admin", "pki/ca.crt", "pki/ca.key")  # the order the errors were reported in
    for rel in order:
        if rel not in listing.etags:
            raise _missing(store, cluster_name, rel)
    ssh, record = parallel(read, ["ssh/public/admin", verified.VERIFIED])
    if ssh is not None:
        vouched = verified.vouched_ca_hash(record[0] if record else None, {"ssh/public/admin": ssh[0]}, listing.etags)
        if vouched is not None:
            return _ssh_key_line(ssh[0]), vouched
    found = dict(zip(order[1:], parallel(read, list(order[1:]))), **{"ssh/public/admin": ssh})
    objects: dict[str, bytes] = {}
    etags: dict[str, str] = {}
    for rel in order:
        got = found[rel]
        if got is None:
            raise _missing(store, cluster_name, rel)
        objects[rel], etags[rel] = bytes(got[0]), got[1]
    vouched = verified.vouched_ca_hash(record[0] if record else None, objects)
    if vouched is not None:
        key_line, ca = _ssh_key_line(objects["ssh/public/admin"]), vouched
    else:
        key_line = _checked_ssh_key(store, cluster_name, objects["ssh/public/admin"])
        ca = _checked_ca_hash(objects["pki/ca.crt"], objects["pki/ca.key"])
    fresh = verified.record(objects, ca, etags)
    if write_record and (record is None or record[0] != fresh):
        try:
            store.write_object(cluster_name, verified.VERIFIED, fresh, record[1] if record else None, listing)
        except KopsyError:
            pass  # a cache: see above
    return key_line, ca


def _check_stored_spec(store: Any, cluster: Cluster, igs: list[InstanceGroup]) -> None:
    """What ``create`` would refuse is refused on the way back in too (but for the control-plane
    count, judged with the cloud's facts in ``check_whole``)."""
    from kopsy.spec.validation import cluster_problems, instance_group_problems

    problems = cluster_problems(cluster)
    for ig in igs:
        problems.extend(instance_group_problems(ig, cluster))
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise StateStoreError(
            f"the spec of cluster {cluster.name} in the state store ({store.url_for(cluster.name)}) is not valid: "
            f"{problems[0]}{more}; nothing was changed; fix it with 'kopsy edit' or restore it from S3 versioning"
        )


def _check_config_base(store: Any, cluster: Cluster) -> str:
    """``configBase`` must name the store the cluster was read from: instances read their PKI
    from it, and a config pointing elsewhere (another bucket, or S3 for a file:// store) would
    build a cluster from one store whose instances read another."""
    here = store.url_for(cluster.name)
    if cluster.config_base and cluster.config_base.rstrip("/") != here:
        raise StateStoreError(
            f"cluster {cluster.name} was read from {here} but its spec.configBase says {cluster.config_base!r}; "
            f"nothing was changed; set configBase to {here} (or remove it) with 'kopsy edit cluster {cluster.name}'"
        )
    return here


def read_inputs(store: Any, cluster_name: str, *, record_verified: bool = True) -> ClusterInputs:
    """Read the spec, instance groups, admin SSH key and CA from the state store
    (``store`` is a ``kopsy.state.clusters.ClusterStore``), and check them as strictly as
    ``create`` checks what it writes: the plan is built from these, so a damaged store must stop
    here, before anything in AWS changes. AMIs are resolved later, while the facts are being
    read (``plan_update``). ``record_verified`` False (a dry run) leaves the store as it is,
    even where ``pki/verified.json`` is missing or stale. The cluster's listing is kept on the
    result (``listing``) for the removal records, addons and published modules."""

    # One round trip when the read cache holds the spec (ClusterStore.listing): the listing and the
    # cache; otherwise a second one for what it lacks, all at once.
    listing = store.listing(cluster_name, cached=True)
    cluster_etag, ig_list, (key, ca) = parallel(lambda f: f(), [
        lambda: store.get_cluster(cluster_name, listing),
        lambda: store.list_instance_groups(cluster_name, listing),
        lambda: _stored_key_and_ca(store, cluster_name, listing, write_record=record_verified),
    ])
    cluster = cluster_etag[0]
    igs = [ig for ig, _ in ig_list]
    _check_stored_spec(store, cluster, igs)
    state_url = _check_config_base(store, cluster)
    if record_verified:
        store.save_reads(listing, wait=False)  # beside the describes; the lock's release waits for it
    return ClusterInputs(cluster, igs, key, ca, state_url, listing=listing)


def read_removed(store: Any, cluster_name: str, listing: Any = None) -> set[str]:
    """Groups removed on purpose (``kopsy delete instancegroup``) whose resources may be deleted."""
    return set(store.removed_instance_groups(cluster_name, listing))


_PINNED = re.compile(rb"CA_CERT_HASH=['\"]?(sha256:[0-9a-f]{64})")


def _pinned_hash(a: Actual) -> str | None:
    data = a.fields.get("user_data") or b""
    if not isinstance(data, bytes):
        return None
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            return None
    m = _PINNED.search(data)
    return m.group(1).decode() if m else None


def check_whole(inputs: ClusterInputs, facts: dict[str, list[Actual]], removed: Collection[str] = ()) -> None:
    """Refuse to act on a cluster that is not whole, before anything in AWS changes.

    - a group running in AWS whose object is missing from the store, with no removal record:
      the plan would delete its launch template and Auto Scaling group (terminating its
      instances) because of something *missing*, which is never consent;
    - a control-plane group count other than 1, 3 or 5 (0 would build a cluster with no
      control plane);
    - a running launch template pinning another CA than ``pki/ca.crt``.
    """
    cluster = inputs.cluster.name
    stored = {ig.name for ig in inputs.instance_groups}
    # What an instance group runs on (its template and Auto Scaling group, whatever the kinds):
    # every resource kopsy manages that carries the instance-group tag.
    running: dict[str, list[Actual]] = {}
    for items in managed_only(cluster, facts).values():
        for a in items:
            if group := a.tags.get(T.TAG_INSTANCE_GROUP):
                running.setdefault(group, []).append(a)
    missing = sorted(set(running) - stored - set(removed))
    if missing:
        keys = ", ".join(f"{inputs.state_store_url}/instancegroup/{n}" for n in missing)
        raise StateStoreError(
            f"instance group(s) {', '.join(missing)} of cluster {cluster} are running in AWS but missing from the "
            f"state store ({keys}); nothing was changed: a missing object is never taken as a request to delete; "
            f"{RESTORE_HINT}; to remove a group on purpose run 'kopsy delete instancegroup NAME --name {cluster} --yes'"
        )
    control_planes = sorted(ig.name for ig in inputs.instance_groups if ig.role == ROLE_CONTROL_PLANE)
    if len(control_planes) not in CONTROL_PLANE_COUNTS:
        found = f" ({', '.join(control_planes)})" if control_planes else ""
        raise StateStoreError(
            f"cluster {cluster} has {len(control_planes)} control-plane instance group(s) in the state store{found}; "
            f"etcd needs 1, 3 or 5; nothing was built or changed; if groups under {inputs.state_store_url}/instancegroup/ "
            f"went missing, {RESTORE_HINT}"
        )
    for name in sorted(stored):
        for a in running.get(name, []):
            pinned = _pinned_hash(a)  # what carries user-data (the launch template) pins a CA
            if pinned and pinned != inputs.ca_cert_hash:
                raise StateStoreError(
                    f"the cluster CA in the state store ({inputs.state_store_url}/pki/ca.crt, {inputs.ca_cert_hash[:19]}...) "
                    f"is not the CA that running launch template {a.name} pins ({pinned[:19]}...); nothing was changed; "
                    f"restore the original pki/ca.crt and pki/ca.key from S3 versioning or a backup"
                )


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


def existing_network_gateway(clients: AwsClients, cluster: Cluster) -> str:
    """For a cluster in an existing VPC (``spec.networkID``): check the VPC can take it (DNS on,
    named subnets in it and in their zones, a gateway if kopsy adds public subnets) and return
    its internet gateway ("" for none, or for a VPC of kopsy's own)."""
    if not cluster.network_id:
        return ""
    from kopsy.cloud.aws.existing import network_problems, read_network

    net = read_network(clients, cluster.network_id, [s.id for s in cluster.subnets if s.id])
    problems = network_problems(cluster, net)
    if problems:
        raise CloudError(f"cannot build cluster {cluster.name} in VPC {cluster.network_id}: {'; '.join(problems)}")
    return net.internet_gateway


@dataclass
class Planned:
    plan: Plan
    facts: dict[str, list[Actual]]
    held_version: str = ""  # nodes and bastions kept on this version (skew), "" when not

    def outputs(self) -> dict[Key, dict[str, Any]]:
        """Known outputs of existing resources, the starting point of an apply."""
        return {a.key: dict(a.outputs) for items in self.facts.values() for a in items}


def plan_update(clients: AwsClients, inputs: ClusterInputs, *, removed: Collection[str] = (),
                ignore_skew: bool = False) -> Planned:
    """Fresh facts and the plan. AMI lookups (read-only too) overlap with the facts.

    ``removed``: groups whose resources may be deleted (removal records); any other running
    group missing from ``inputs`` stops the plan (``check_whole``)."""
    missing = [ig for ig in inputs.instance_groups if ig.name not in inputs.images]
    facts, images, kms_key, gateway = parallel(
        lambda f: f(),
        [
            lambda: gather_facts(clients, inputs.cluster.name),
            lambda: resolve_images(clients, missing),
            lambda: state_bucket_kms_key(clients, inputs.state_store_url),
            lambda: existing_network_gateway(clients, inputs.cluster),
        ],
    )
    check_whole(inputs, facts, removed)
    inputs = replace(inputs, images={**inputs.images, **images}, state_kms_key=kms_key, internet_gateway=gateway)
    if not ignore_skew:
        from kopsy.reconcile.builders.skew import node_version

        held = node_version(clients, inputs.cluster.name, inputs.cluster.kubernetes_version, inputs.instance_groups, facts)
        if held:
            inputs = replace(inputs, node_version=held)
    return Planned(diff(inputs.cluster.name, desired_resources(inputs), facts), facts, inputs.node_version)


def apply_update(
    clients: AwsClients, planned: Planned, *, workers: int = MAX_IN_FLIGHT, retry_timeout: float = 300.0, on_event: Event | None = None,
    publish: Callable[[], None] | None = None,
) -> ApplyResult:
    """Apply the plan; ``publish`` runs beside it, before any launch template (``apply_plan``)."""
    ctx = ApplyContext(clients, planned.plan.cluster, retry_timeout=retry_timeout)
    return apply_plan(planned.plan, ctx, outputs=planned.outputs(), workers=workers, on_event=on_event, publish=publish)

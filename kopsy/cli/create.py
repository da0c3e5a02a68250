"""``kopsy create cluster`` and ``kopsy create -f FILE``: write a spec, its PKI and secrets to the store.

Nothing is created in the cloud here; ``kopsy update cluster --yes`` does that.
"""

from __future__ import annotations

import datetime
import os
import sys
from typing import Any
from pathlib import Path

import click

from kopsy.cli.context import open_cluster_store, options, resolve_cluster_name
from kopsy.cli.output import dump_json, dump_yaml_documents, warn
from kopsy.errors import SpecInvalid, UsageError
from kopsy.localfiles import MIB, SPEC_FILE_LIMIT, LocalFileError, read_text
from kopsy.spec.defaults import DEFAULT_MACHINE_TYPE, DEFAULT_NETWORK_CIDR, NAT_MODES, NAT_PER_ZONE, CreateOptions, new_cluster
from kopsy.spec.documents import SpecDocuments, parse_documents
from kopsy.spec.model import (
    NETWORKING_PROVIDERS,
    SSH_KEY_ANNOTATION,
    Cluster,
    InstanceGroup,
    cluster_to_dict,
    instance_group_to_dict,
)
from kopsy.spec.sshkey import read_ssh_public_key
from kopsy.spec.validation import validate_cluster
from kopsy.spec.versions import DEFAULT_KUBERNETES_VERSION

DEFAULT_SSH_KEYS = ("~/.ssh/id_ed25519.pub", "~/.ssh/id_rsa.pub")


def _split(values: tuple[str, ...]) -> list[str]:
    """Flags that take a list accept both repeats and commas: --zones a,b --zones c."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _ssh_key_path(given: str | None) -> str:
    if given:
        return given
    for candidate in DEFAULT_SSH_KEYS:
        if Path(candidate).expanduser().is_file():
            return candidate
    raise UsageError(
        "no SSH public key: pass --ssh-public-key PATH (for example ~/.ssh/id_ed25519.pub; "
        "create one with ssh-keygen -t ed25519)"
    )


def _warn_open_access(cluster: Cluster) -> None:
    if "0.0.0.0/0" in cluster.ssh_access:
        warn("SSH is open to the whole internet (sshAccess 0.0.0.0/0); restrict it with --ssh-access CIDR")
    if "0.0.0.0/0" in cluster.kubernetes_api_access:
        warn(
            "the Kubernetes API is open to the whole internet (kubernetesApiAccess 0.0.0.0/0); "
            "restrict it with --admin-access CIDR"
        )


def _documents(cluster: Cluster, groups: list[InstanceGroup]) -> list[dict[str, object]]:
    return [cluster_to_dict(cluster)] + [instance_group_to_dict(ig) for ig in groups]


def _print_documents(cluster: Cluster, groups: list[InstanceGroup], fmt: str) -> None:
    docs = _documents(cluster, groups)
    click.echo(dump_json(docs) if fmt == "json" else dump_yaml_documents(docs), nl=fmt == "json")


def _check_zones_if_online(cluster: Cluster) -> None:
    """With credentials at hand, check the zones against the region's real ones now, so a
    ``us-east-1z`` fails at create rather than at update. Offline (no credentials, no endpoint,
    not allowed to ask) this is skipped: the shape was checked already and update checks again."""
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.cloud.aws.zones import region_zones, unknown_zones
    from kopsy.errors import KopsyError

    region = cluster.region
    try:
        clients = AwsClients(region, max_attempts=0, connect_timeout=3)
        if not clients.has_credentials():
            return
        known = region_zones(clients, region)
    except (KopsyError, OSError):
        return
    problem = unknown_zones([s.zone for s in cluster.subnets], known, region)
    if problem:
        raise SpecInvalid([problem])


def _existing_network(network_id: str, zones: list[str], subnets: list[str], utility: list[str]) -> dict[str, Any]:
    """``CreateOptions`` fields for an existing VPC, read from AWS now: its CIDR and taken ranges
    (new subnets are carved from the free ones) and the named subnets by zone, each checked to be
    in that VPC and in one of the zones."""
    from kopsy.cloud.aws.existing import read_network, subnets_by_zone
    from kopsy.cloud.aws.session import AwsClients
    from kopsy.spec.model import region_of_zone

    if not zones:
        raise UsageError("--zones: at least one availability zone is required (e.g. --zones us-east-1a)")
    clients = AwsClients(region_of_zone(zones[0]))
    net = read_network(clients, network_id, subnets + utility)
    return {
        "network_id": network_id,
        "network_cidr": net.cidr,
        "subnet_ids": subnets_by_zone(net, subnets, zones, "--subnets"),
        "utility_subnet_ids": subnets_by_zone(net, utility, zones, "--utility-subnets"),
        "taken_cidrs": [s.cidr for s in net.subnets.values() if s.vpc == network_id],
    }


def _store_new_cluster(cluster: Cluster, groups: list[InstanceGroup], ssh_key_path: str) -> str:
    """Write spec, PKI, secrets and SSH key; returns the store URL. The only writer of new clusters."""
    from kopsy.pki import ca_cert_hash, generate_cluster_pki, verified

    public_key = read_ssh_public_key(ssh_key_path)
    _check_zones_if_online(cluster)
    store = open_cluster_store()
    for message in store.store.check():
        warn(message)
    if cluster.name in store.list_clusters():
        from kopsy.errors import ClusterExists

        raise ClusterExists(cluster.name)
    _warn_open_access(cluster)
    cluster.config_base = store.store.url_for(cluster.name)
    cluster.creation_timestamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.annotations[SSH_KEY_ANNOTATION] = os.path.abspath(os.path.expanduser(ssh_key_path))
    pki = generate_cluster_pki(cluster.name)
    objects = dict(pki.store_objects())
    objects["ssh/public/admin"] = (public_key + "\n").encode()
    # update then skips cryptography, and (where the store's ETags follow from the bytes) reading the CA at all
    etags = {rel: store.store.etag_for(objects[rel]) or "" for rel in verified.INPUTS}
    objects[verified.VERIFIED] = verified.record(objects, ca_cert_hash(pki.ca_cert), etags)
    store.create_cluster(cluster, groups, objects)
    return store.store.url


def _next_steps(name: str, url: str, groups: list[InstanceGroup]) -> None:
    click.echo(
        f'Cluster "{name}" created in {url}: spec, {len(groups)} instance group(s), PKI and secrets.\n'
        f"Nothing has been created in AWS yet.\n\n"
        f"  Review the plan:        kopsy update cluster {name}\n"
        f"  Change the spec:        kopsy edit cluster {name}\n"
        f"  Create the cluster:     kopsy update cluster {name} --yes"
    )


@click.group(invoke_without_command=True)
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE",
              help="Create the Cluster and InstanceGroups in FILE (multi-document YAML; - reads stdin).")
@click.option("--ssh-public-key", metavar="PATH", help="SSH public key for the cluster (with -f and a Cluster).")
@click.option("--dry-run", is_flag=True, help="Validate only; with -f this needs no credentials, store or network.")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), help="With --dry-run, print the documents.")
@click.pass_context
def command(ctx: click.Context, filenames: tuple[str, ...], ssh_public_key: str | None, dry_run: bool,
            output: str | None) -> None:
    """Create a cluster spec (and its PKI) in the state store.

    \b
      kopsy create cluster NAME --zones us-east-1a --ssh-public-key ~/.ssh/id_ed25519.pub
      kopsy create -f cluster.yaml
    """
    if ctx.invoked_subcommand is not None:
        if filenames:
            raise UsageError("-f FILE and a subcommand cannot be combined")
        return
    if not filenames:
        raise UsageError("nothing to create: use 'kopsy create cluster NAME --zones ZONES' or 'kopsy create -f FILE'")
    _create_from_files(filenames, ssh_public_key, dry_run, output)


def read_spec_files(filenames: tuple[str, ...], cluster_name: str | None = None) -> SpecDocuments:
    combined = SpecDocuments()
    for filename in filenames:
        if filename == "-":
            text, source = sys.stdin.read(SPEC_FILE_LIMIT + 1), "stdin"
            if len(text) > SPEC_FILE_LIMIT:
                raise UsageError(f"-f -: the spec on stdin is larger than {SPEC_FILE_LIMIT // MIB} MiB")
        else:
            try:
                # A regular file of at most the cap: a FIFO or /dev/zero is refused, not waited on or read forever.
                text = read_text(filename, SPEC_FILE_LIMIT, "spec file")
            except LocalFileError as exc:
                raise UsageError(f"-f: {exc.message}") from None
            source = filename
        docs = parse_documents(text, source, cluster_name)
        if docs.cluster is not None:
            if combined.cluster is not None:
                raise SpecInvalid([f"{source}: a second Cluster document; give one cluster at a time"])
            combined.cluster = docs.cluster
        combined.instance_groups.extend(docs.instance_groups)
        combined.notes.extend(docs.notes)
    for note in combined.notes:
        click.echo(f"Note: {note}", err=True)
    if combined.cluster is not None:
        for ig in combined.instance_groups:
            ig.cluster_name = ig.cluster_name or combined.cluster.name
    return combined


def _create_from_files(filenames: tuple[str, ...], ssh_public_key: str | None, dry_run: bool,
                       output: str | None) -> None:
    docs = read_spec_files(filenames, options().cluster_name)
    cluster = docs.cluster
    if cluster is not None:
        if not docs.instance_groups:
            raise SpecInvalid(
                [f"cluster {cluster.name!r}: no InstanceGroup documents; a cluster needs at least one "
                 f"ControlPlane group in the same file"]
            )
        validate_cluster(cluster, docs.instance_groups)
        if dry_run:
            if output:
                _print_documents(cluster, docs.instance_groups, output)
            else:
                click.echo(f'Cluster "{cluster.name}" and {len(docs.instance_groups)} instance group(s) are valid '
                           f"(dry run: nothing was written).")
            return
        url = _store_new_cluster(cluster, docs.instance_groups, _ssh_key_path(ssh_public_key))
        _next_steps(cluster.name, url, docs.instance_groups)
        return
    # Only instance groups: add them to a cluster that is already in the store.
    store = open_cluster_store()
    names = {ig.cluster_name for ig in docs.instance_groups}
    if len(names) != 1 or not next(iter(names)):
        raise SpecInvalid(["instance groups: name their cluster in metadata.labels.kopsy.io/cluster (one cluster per file)"])
    listing, (existing_cluster, _), groups = store.read_spec(next(iter(names)))
    existing = [ig for ig, _ in groups]
    taken = {ig.name for ig in existing} & {ig.name for ig in docs.instance_groups}
    if taken:
        raise SpecInvalid([f"instancegroup {n!r} already exists; use 'kopsy replace -f' to change it" for n in sorted(taken)])
    validate_cluster(existing_cluster, existing + docs.instance_groups)
    if dry_run:
        click.echo(f"{len(docs.instance_groups)} instance group(s) are valid (dry run: nothing was written).")
        return
    for ig in docs.instance_groups:
        store.create_instance_group(ig, listing)
        click.echo(f'Instance group "{ig.name}" created in cluster "{ig.cluster_name}".')
    store.save_reads(listing)  # the next update reads them from the cache
    click.echo(f"Apply with: kopsy update cluster {existing_cluster.name} --yes")


@command.command("cluster")
@click.argument("name", required=False)
@click.option("--zones", multiple=True, required=True, metavar="ZONES",
              help="Availability zones, comma separated (all in one region).")
@click.option("--control-plane-zones", multiple=True, metavar="ZONES",
              help="Zones for control-plane instances (default: --zones).")
@click.option("--control-plane-count", type=int, default=1, show_default=True,
              help="Control-plane instances: 1, 3 or 5.")
@click.option("--control-plane-size", default=DEFAULT_MACHINE_TYPE, show_default=True, metavar="TYPE")
@click.option("--node-count", type=int, default=2, show_default=True)
@click.option("--node-size", default=DEFAULT_MACHINE_TYPE, show_default=True, metavar="TYPE")
@click.option("--kubernetes-version", default=DEFAULT_KUBERNETES_VERSION, show_default=True, metavar="VERSION")
@click.option("--network-cidr", default=DEFAULT_NETWORK_CIDR, show_default=True, metavar="CIDR")
@click.option("--networking", type=click.Choice(NETWORKING_PROVIDERS), default="calico", show_default=True)
@click.option("--image", default="", metavar="AMI", help="AMI id for every group (default: Ubuntu 24.04 LTS).")
@click.option("--ssh-public-key", metavar="PATH", help="Default: ~/.ssh/id_ed25519.pub or ~/.ssh/id_rsa.pub.")
@click.option("--ssh-access", multiple=True, metavar="CIDR", help="Who may SSH to instances (default 0.0.0.0/0).")
@click.option("--admin-access", multiple=True, metavar="CIDR",
              help="Who may reach the Kubernetes API (default 0.0.0.0/0).")
@click.option("--topology", type=click.Choice(["public", "private"]), default="public", show_default=True,
              help="private: instances in private subnets behind NAT gateways, load balancers in utility subnets.")
@click.option("--nat", type=click.Choice(NAT_MODES), default=None,
              help="With --topology private: a NAT gateway per zone (default), or a single one for all zones.")
@click.option("--bastion", is_flag=True, help="With --topology private: an SSH bastion group in the utility subnets.")
@click.option("--network-id", metavar="VPC", help="Build in this existing VPC (tagged shared, never changed or deleted).")
@click.option("--subnets", "subnet_ids", multiple=True, metavar="IDS",
              help="With --network-id: existing subnets for the instances, one per zone (others are carved from free space).")
@click.option("--utility-subnets", "utility_subnet_ids", multiple=True, metavar="IDS",
              help="With --network-id and --topology private: existing utility (public) subnets, one per zone.")
@click.option("--dry-run", is_flag=True, help="Print the spec instead of writing it (with -o).")
@click.option("-o", "--output", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
def create_cluster(name: str | None, zones: tuple[str, ...], control_plane_zones: tuple[str, ...],
                   control_plane_count: int, control_plane_size: str, node_count: int, node_size: str,
                   kubernetes_version: str, network_cidr: str, networking: str, image: str,
                   ssh_public_key: str | None, ssh_access: tuple[str, ...], admin_access: tuple[str, ...],
                   topology: str, nat: str | None, bastion: bool, network_id: str | None, subnet_ids: tuple[str, ...],
                   utility_subnet_ids: tuple[str, ...], dry_run: bool, output: str) -> None:
    """Create a cluster spec with sensible defaults, plus its PKI, in the state store."""
    name = name or options().cluster_name
    if not name:
        raise UsageError("a cluster name is required: kopsy create cluster NAME --zones ZONES")
    for flag, wanted in (("--nat", bool(nat)), ("--bastion", bastion)):
        if wanted and topology != "private":
            raise UsageError(f"{flag} needs --topology private (a public cluster has no NAT gateways or bastion)")
    if (subnet_ids or utility_subnet_ids) and not network_id:
        raise UsageError("--subnets and --utility-subnets need --network-id (the existing VPC they are in)")
    if utility_subnet_ids and topology != "private":
        raise UsageError("--utility-subnets needs --topology private (a public cluster has no utility subnets)")
    if network_id and network_cidr != DEFAULT_NETWORK_CIDR:
        raise UsageError("--network-cidr and --network-id exclude each other: an existing VPC has its own CIDR")
    existing = _existing_network(network_id, _split(zones), _split(subnet_ids), _split(utility_subnet_ids)) if network_id else {}
    cidr = existing.pop("network_cidr", network_cidr)  # an existing VPC's own
    for flag, given in (("--ssh-access", ssh_access), ("--admin-access", admin_access)):
        if given and not _split(given):
            # An empty value must not quietly become 0.0.0.0/0 (the default when the flag is absent).
            raise UsageError(f"{flag} is empty; give a CIDR such as 203.0.113.0/24 (or 0.0.0.0/0 for everywhere)")
    cluster, groups = new_cluster(
        CreateOptions(
            name=name,
            zones=_split(zones),
            control_plane_zones=_split(control_plane_zones),
            control_plane_count=control_plane_count,
            control_plane_size=control_plane_size,
            node_count=node_count,
            node_size=node_size,
            kubernetes_version=kubernetes_version,
            network_cidr=cidr,
            networking=networking,
            image=image,
            ssh_access=_split(ssh_access) or ["0.0.0.0/0"],
            api_access=_split(admin_access) or ["0.0.0.0/0"],
            topology=topology,
            nat=nat or NAT_PER_ZONE,
            bastion=bastion,
            **existing,
        )
    )
    validate_cluster(cluster, groups)
    key_path = _ssh_key_path(ssh_public_key)
    read_ssh_public_key(key_path)  # fail on a bad key before anything else happens
    if dry_run:
        _print_documents(cluster, groups, output)
        return
    url = _store_new_cluster(cluster, groups, key_path)
    _next_steps(name, url, groups)


@command.group("secret")
def create_secret() -> None:
    """Set a cluster secret (as kops create secret)."""


@create_secret.command("sshpublickey")
@click.argument("key_name", metavar="NAME", default="admin")
@click.option("-i", "--pubkey", "pubkey", required=True, metavar="FILE", help="OpenSSH public key file (e.g. ~/.ssh/id_ed25519.pub).")
def create_secret_sshpublickey(key_name: str, pubkey: str) -> None:
    """Set or replace the cluster's SSH public key; the next update rolls it out.

    \b
      kopsy create secret sshpublickey admin -i ~/.ssh/id_ed25519.pub --name demo.example.com
    """
    from kopsy.errors import ObjectNotFound
    from kopsy.pki.inventory import ssh_fingerprint
    from kopsy.state.clusters import ClusterStore

    if key_name != "admin":
        raise UsageError(f"kopsy keeps one SSH key per cluster, named admin (got {key_name!r}): "
                         f"kopsy create secret sshpublickey admin -i FILE")
    line = read_ssh_public_key(pubkey)
    store: ClusterStore = open_cluster_store()
    name = resolve_cluster_name(store, None)
    key = f"{name}/ssh/public/admin"
    with store.lock(name, "create secret sshpublickey"):
        cluster, etag = store.get_cluster(name)
        data = (line + "\n").encode()
        try:
            current = store.store.get(key)
        except ObjectNotFound:
            store.store.create(key, data)
        else:
            if current.data.strip() == data.strip():
                click.echo(f"SSH public key admin of cluster {name} is already {ssh_fingerprint(line)}; nothing to do.")
                return
            store.store.replace(key, data, current.etag)
        cluster.annotations[SSH_KEY_ANNOTATION] = os.path.abspath(os.path.expanduser(pubkey))
        store.replace_cluster(cluster, etag)
    click.echo(f"SSH public key admin of cluster {name} set to {ssh_fingerprint(line)}.")
    click.echo(f"Roll it out (a new EC2 key pair and launch-template versions): kopsy update cluster {name} --yes")

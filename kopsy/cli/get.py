"""``kopsy get clusters|cluster|instancegroups|ig``: read the store, print tables or documents."""

from __future__ import annotations

import click

from kopsy.cli.context import open_cluster_store, resolve_cluster_name, warn
from kopsy.cli.output import OUTPUT_FORMATS, emit, table
from kopsy.errors import KopsyError, StateStoreError
from kopsy.spec.model import cluster_to_dict, instance_group_to_dict


class NoClusters(KopsyError):
    def __init__(self) -> None:
        super().__init__("no clusters in this state store; create one with: kopsy create cluster NAME --zones ZONES")


ALIASES = {"secret": "secrets", "instance": "instances", "cluster": "clusters", "instancegroup": "instancegroups", "ig": "instancegroups", "igs": "instancegroups"}


class AliasGroup(click.Group):
    """A group whose commands also answer to kops' singular and short names (ig, cluster)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[no-untyped-def]
        _, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else None), cmd, rest


@click.group(cls=AliasGroup)
def command() -> None:
    """List clusters, instance groups, secrets and instances."""


@command.command("clusters")
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
def get_clusters(names: tuple[str, ...], output: str) -> None:
    """Clusters in the state store (also: get cluster NAME -o yaml)."""
    store = open_cluster_store()
    wanted = list(names) or store.list_clusters()
    clusters = []
    for name in wanted:
        try:
            cluster, _ = store.get_cluster(name)
        except StateStoreError as exc:
            if names:
                raise
            # Listing everything: one damaged or foreign config must not hide every other cluster.
            warn(f"skipping {exc.message}")
            continue
        clusters.append(cluster)
    if output == "table":
        if not clusters:
            raise NoClusters()
        click.echo(table(["NAME", "CLOUD", "ZONES"], [[c.name, "aws", ",".join(c.zones)] for c in clusters]))
        return
    docs = [cluster_to_dict(c) for c in clusters]
    emit(docs[0] if len(docs) == 1 and names else docs, output)


@command.command("instancegroups")
@click.argument("names", nargs=-1)
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
def get_instance_groups(names: tuple[str, ...], output: str) -> None:
    """Instance groups of a cluster (--name, or the only cluster in the store)."""
    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, None)
    groups = [ig for ig, _ in store.list_instance_groups(cluster_name)]
    if names:
        missing = set(names) - {ig.name for ig in groups}
        if missing:
            raise KopsyError(
                f"instance group(s) {', '.join(sorted(missing))} not found in cluster {cluster_name}; "
                f"it has: {', '.join(ig.name for ig in groups)}"
            )
        groups = [ig for ig in groups if ig.name in names]
    if output == "table":
        rows = [[ig.name, ig.role, ig.machine_type, ig.min_size, ig.max_size, ",".join(ig.subnets)] for ig in groups]
        click.echo(table(["NAME", "ROLE", "MACHINETYPE", "MIN", "MAX", "ZONES"], rows))
        return
    docs = [instance_group_to_dict(ig) for ig in groups]
    emit(docs[0] if len(docs) == 1 and names else docs, output)


def _store_reader(store, cluster_name: str):  # type: ignore[no-untyped-def]
    """A ``kopsy.pki.inventory.Reader`` over the cluster's objects in the store."""
    from kopsy.errors import ObjectNotFound
    from kopsy.pki.inventory import Stored

    def read(relkey: str) -> Stored | None:
        try:
            obj = store.store.get(f"{cluster_name}/{relkey}")
        except ObjectNotFound:
            return None
        return Stored(obj.data, obj.modified)

    return read


@command.command("secrets")
@click.argument("name", required=False)
@click.option("--type", "type_", metavar="TYPE", help="Only this type: Keypair, Secret or SSHPublicKey.")
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json", "plaintext"]), default="table",
              show_default=True, help="plaintext prints one named secret's value (never a private key).")
def get_secrets(name: str | None, type_: str | None, output: str) -> None:
    """Keypairs and secrets of a cluster: type, id, created; never their values.

    \b
      kopsy get secrets
      kopsy get secrets --type Secret
      kopsy get secrets bootstrap-token -o plaintext    # prints the secret value
    """
    from kopsy.errors import UsageError
    from kopsy.pki.inventory import list_secrets, plaintext

    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, None)
    read = _store_reader(store, cluster_name)
    if output == "plaintext":
        if not name:
            raise UsageError("-o plaintext prints one secret's value: name it, e.g. kopsy get secrets bootstrap-token -o plaintext")
        kind, value = plaintext(read, name)
        if kind == "Secret":
            click.echo(f"Warning: printing the value of secret {name!r} of cluster {cluster_name}; "
                       f"it grants access to the cluster, keep it out of logs and tickets", err=True)
        click.echo(value.decode("utf-8", "replace").strip())
        return
    entries = list_secrets(read, name, type_)
    if output == "table":
        click.echo(table(["TYPE", "NAME", "ID", "CREATED"], [[e.type, e.name, e.id, e.created] for e in entries]))
        return
    docs = [e.as_dict() for e in entries]
    emit(docs[0] if name and len(docs) == 1 else docs, output)


@command.command("etcd-backups")
@click.argument("names", nargs=-1, metavar="[NAME]")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
def get_etcd_backups(names: tuple[str, ...], output: str) -> None:
    """etcd snapshots of a cluster in the state store, newest first."""
    from kopsy.cli.context import strip_cluster_word
    from kopsy.etcd.backups import age, list_backups
    from kopsy.text import printable

    store = open_cluster_store()
    name = resolve_cluster_name(store, strip_cluster_word(names))
    store.get_cluster(name)  # a missing cluster says so, not "no backups"
    backups = list_backups(store, name)
    if output != "table":
        emit([b.to_dict() for b in backups], output)
        return
    if not backups:
        click.echo(f"No etcd snapshots of {name} yet (control planes take one every backup interval; "
                   f"kopsy backup etcd {name} takes one now)")
        return
    click.echo(table(["TIMESTAMP", "AGE", "SIZE", "REVISION", "K8S-VERSION"],
                     [[b.timestamp, age(b.timestamp), b.size, b.revision, printable(b.kubernetes_version or "-", 40)]
                      for b in backups]))


@command.command("instances")
@click.option("-o", "--output", type=OUTPUT_FORMATS, default="table", show_default=True)
def get_instances(output: str) -> None:
    """Instances of a cluster: group, state, addresses, launch-template version."""
    from kopsy.cli.context import aws_clients
    from kopsy.toolbox.dump import instances_of

    store = open_cluster_store()
    cluster_name = resolve_cluster_name(store, None)
    cluster, _ = store.get_cluster(cluster_name)
    found = instances_of(aws_clients(cluster.region or None), cluster_name)
    if output != "table":
        emit(found, output)
        return
    rows = [[i["id"], i["instanceGroup"], i["role"], i["state"], i["zone"], i["privateIp"] or "-", i["publicIp"] or "-",
             (i["launchTemplate"] or {}).get("version") or "-"] for i in found]
    click.echo(table(["ID", "INSTANCEGROUP", "ROLE", "STATE", "ZONE", "INTERNAL-IP", "EXTERNAL-IP", "TEMPLATE"], rows))

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


ALIASES = {"cluster": "clusters", "instancegroup": "instancegroups", "ig": "instancegroups", "igs": "instancegroups"}


class AliasGroup(click.Group):
    """A group whose commands also answer to kops' singular and short names (ig, cluster)."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or super().get_command(ctx, ALIASES.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[no-untyped-def]
        _, cmd, rest = super().resolve_command(ctx, args)
        return (cmd.name if cmd else None), cmd, rest


@click.group(cls=AliasGroup)
def command() -> None:
    """List clusters and instance groups."""


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

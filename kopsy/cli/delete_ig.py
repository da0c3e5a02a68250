"""``kopsy delete instancegroup NAME [--yes]``: remove a group from the spec, on purpose.

``update`` deletes a running group's launch template and Auto Scaling group only when the
store records that the group was removed explicitly; this command writes that record and then
removes the group's object. Its cloud resources go at the next ``kopsy update cluster --yes``.
"""

from __future__ import annotations

import click

from kopsy.cli.context import open_cluster_store, resolve_cluster_name
from kopsy.errors import ObjectNotFound, UsageError
from kopsy.spec.model import ROLE_CONTROL_PLANE
from kopsy.spec.validation import CONTROL_PLANE_COUNTS

NOUNS = ("instancegroup", "instancegroups", "ig", "igs")


def delete_instance_group(names: list[str], yes: bool) -> None:
    if len(names) != 1:
        raise UsageError("name one instance group: kopsy delete instancegroup NAME [--name CLUSTER] --yes")
    ig = names[0]
    store = open_cluster_store()
    cluster = resolve_cluster_name(store, None)
    _, _, entries = store.read_spec(cluster)
    groups = {g.name: g for g, _ in entries}
    current = groups.get(ig)
    if current is None and ig in store.removed_instance_groups(cluster):
        click.echo(f"Instance group {ig} of cluster {cluster} is already removed; "
                   f"'kopsy update cluster {cluster} --yes' deletes its cloud resources")
        return
    if current is not None and current.role == ROLE_CONTROL_PLANE:
        left = sum(1 for g in groups.values() if g.role == ROLE_CONTROL_PLANE) - 1
        if left not in CONTROL_PLANE_COUNTS:
            raise UsageError(
                f"removing control-plane group {ig} would leave {left} control-plane group(s) in cluster {cluster}; "
                f"etcd needs 1, 3 or 5"
            )
    if current is None:
        try:
            store.get_instance_group(cluster, ig)
        except ObjectNotFound as exc:
            if not yes:
                raise
            # The object is already gone (that is why update stopped): record the consent anyway.
            click.echo(f"Warning: {exc.message}; recording its removal anyway", err=True)
    if not yes:
        click.echo(f"Would remove instance group {ig} from cluster {cluster}; its launch template and Auto Scaling "
                   f"group (and their instances) are deleted at the next 'kopsy update cluster {cluster} --yes'")
        click.echo("Must specify --yes to delete instancegroup")
        return
    store.delete_instance_group(cluster, ig, role=current.role if current else "", missing_ok=True)
    click.echo(f"Removed instance group {ig} from cluster {cluster}")
    click.echo(f"Its cloud resources are deleted by: kopsy update cluster {cluster} --yes")

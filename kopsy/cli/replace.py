"""``kopsy replace -f FILE``: overwrite specs in the store with the documents in FILE.

The Cluster must exist; an InstanceGroup that does not exist yet is created (so a file can add a
group), and groups not named in the file are left alone. Every write carries the ETag read just
before, so a concurrent change is a conflict, not a lost write.
"""

from __future__ import annotations

import click

from kopsy.cli.context import open_cluster_store, options
from kopsy.cli.create import read_spec_files
from kopsy.errors import SpecInvalid, UsageError
from kopsy.spec.validation import validate_cluster


@click.command()
@click.option("-f", "--filename", "filenames", multiple=True, metavar="FILE", help="Spec file (- reads stdin).")
def command(filenames: tuple[str, ...]) -> None:
    """Replace cluster and instance-group specs from a file."""
    if not filenames:
        raise UsageError("replace needs -f FILE")
    docs = read_spec_files(filenames, options().cluster_name)
    names = {ig.cluster_name for ig in docs.instance_groups}
    if docs.cluster is not None:
        names.add(docs.cluster.name)
    if len(names) != 1 or not next(iter(names)):
        raise SpecInvalid(["the file must describe exactly one cluster (name it in the Cluster or in metadata.labels.kopsy.io/cluster)"])
    name = next(iter(names))
    store = open_cluster_store()
    listing, (current, cluster_etag), groups = store.read_spec(name)
    existing = {ig.name: (ig, etag) for ig, etag in groups}
    cluster = docs.cluster or current
    # Keep what the store owns (where the cluster lives, when it was made) when the file omits it.
    cluster.config_base = cluster.config_base or current.config_base
    here = store.url_for(name)
    if cluster.config_base and cluster.config_base.rstrip("/") != here:
        raise SpecInvalid([f"spec.configBase: must be the store the cluster lives in ({here}), not {cluster.config_base!r}"])
    cluster.creation_timestamp = cluster.creation_timestamp or current.creation_timestamp
    cluster.annotations = {**current.annotations, **cluster.annotations}
    merged = {n: ig for n, (ig, _) in existing.items()}
    merged.update({ig.name: ig for ig in docs.instance_groups})
    validate_cluster(cluster, list(merged.values()))
    if docs.cluster is not None:
        store.replace_cluster(cluster, cluster_etag, listing)
        click.echo(f'Cluster "{name}" replaced.')
    for ig in docs.instance_groups:
        if ig.name in existing:
            store.replace_instance_group(ig, existing[ig.name][1], listing)
            click.echo(f'Instance group "{ig.name}" replaced.')
        else:
            store.create_instance_group(ig, listing)
            click.echo(f'Instance group "{ig.name}" created.')
    store.save_reads(listing)  # the next update reads them from the cache
    click.echo(f"Review the plan with: kopsy update cluster {name}")

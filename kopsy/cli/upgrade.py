"""``kopsy upgrade cluster [NAME] [--kubernetes-version V] [--yes]``: move the spec to a newer Kubernetes.

Default: the next supported minor at its newest known patch (``kopsy.spec.versions``). More
than one minor at a time and downgrades are refused. The dry run prints ``ITEM PROPERTY OLD
NEW``; ``--yes`` writes the spec (a conditional write: a concurrent edit is a conflict, not a
lost change). Nothing in AWS changes here: ``update --yes`` and ``rolling-update --yes`` roll
it out, control planes first (docs/rolling-update.md, "Upgrading").
"""

from __future__ import annotations

import click

from kopsy.cli.context import open_cluster_store, options, resolve_cluster_name, strip_cluster_word
from kopsy.cli.output import table
from kopsy.errors import KopsyError, UsageError


@click.command("upgrade", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, metavar="[cluster] [NAME]")
@click.option("--kubernetes-version", metavar="VERSION", help="Target version (default: the next minor's newest patch).")
@click.option("--yes", "-y", is_flag=True, help="Write the new version to the spec (without it, only show it).")
def command(args: tuple[str, ...], kubernetes_version: str | None, yes: bool) -> None:
    """Upgrade a cluster's Kubernetes version in its spec, one minor at a time.

    \b
      kopsy upgrade cluster demo.example.com            # what would change
      kopsy upgrade cluster demo.example.com --yes
      kopsy update cluster demo.example.com --yes        # control planes' templates first
      kopsy rolling-update cluster demo.example.com --yes
    """
    from kopsy.spec.model import replace
    from kopsy.spec.versions import next_version, upgrade_problem

    opts = options()
    store = open_cluster_store(opts)
    name = resolve_cluster_name(store, strip_cluster_word(args), opts)
    cluster, etag = store.get_cluster(name)
    current = cluster.kubernetes_version
    target = kubernetes_version.strip() if kubernetes_version else next_version(current)
    if target is None:
        click.echo(f"Cluster {name} is on {current}, the newest version kopsy supports: no upgrade available.")
        return
    if target.lstrip("v") == current.lstrip("v"):
        click.echo(f"Cluster {name} already runs {current}: no upgrade required.")
        return
    problem = upgrade_problem(current, target)
    if problem:
        raise UsageError(f"cannot upgrade cluster {name}: {problem}")
    click.echo(table(["ITEM", "PROPERTY", "OLD", "NEW"], [["Cluster", "KubernetesVersion", current, target.lstrip("v")]]))
    if not yes:
        click.echo("\nMust specify --yes to perform upgrade")
        return
    with store.lock(name, "upgrade cluster"):
        fresh, etag = store.get_cluster(name)
        if fresh.kubernetes_version != current:
            raise KopsyError(f"cluster {name} changed to {fresh.kubernetes_version} meanwhile; re-run the upgrade")
        store.replace_cluster(replace(fresh, kubernetes_version=target.lstrip("v")), etag)
    click.echo(f"\nUpgrade of cluster {name} to {target.lstrip('v')} written to the spec. Next:")
    click.echo(f"  kopsy update cluster {name} --yes            # control-plane templates move now; nodes wait")
    click.echo(f"  kopsy rolling-update cluster {name} --yes    # control planes first, then update --yes and roll the nodes")

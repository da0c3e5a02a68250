"""``kopsy upgrade cluster [NAME] [--kubernetes-version V] [--yes] [--roll]``: move the spec to a newer Kubernetes.

Default: the next supported minor at its newest published patch (``kopsy.spec.patches``: the
package index instances install from). More
than one minor at a time and downgrades are refused. The dry run prints ``ITEM PROPERTY OLD
NEW``; ``--yes`` writes the spec (a conditional write: a concurrent edit is a conflict, not a
lost change). Nothing in AWS changes here: ``update --yes`` and ``rolling-update --yes`` roll
it out, control planes first (docs/rolling-update.md, "Upgrading").

``--roll`` runs that documented sequence in one command, calling the commands' own functions
(``update_cluster``, ``rolling_update``, ``validate``): every step is a no-op once done, so a
plain rerun of an interrupted run finishes it. Without a ``--kubernetes-version`` a rerun
finishes the upgrade the spec already names (while any instance runs an older version)
instead of starting the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from kopsy.cli.context import open_cluster_store, options, resolve_cluster_name, strip_cluster_word
from kopsy.cli.output import table
from kopsy.cli.rolling import RollFlags, roll_flags
from kopsy.errors import KopsyError, UsageError


@click.command("upgrade", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, metavar="[cluster] [NAME]")
@click.option("--kubernetes-version", metavar="VERSION", help="Target version (default: the next minor's newest patch in the package repository).")
@click.option("--yes", "-y", is_flag=True, help="Write the new version to the spec (without it, only show it).")
@click.option("--roll", is_flag=True,
              help="Then roll it out: update, control planes, update, the other groups, validate (the roll flags apply).")
@roll_flags
@click.pass_context
def command(ctx: click.Context, args: tuple[str, ...], kubernetes_version: str | None, yes: bool, roll: bool,
            **flags: Any) -> None:
    """Upgrade a cluster's Kubernetes version in its spec, one minor at a time.

    \b
      kopsy upgrade cluster demo.example.com            # what would change
      kopsy upgrade cluster demo.example.com --yes
      kopsy update cluster demo.example.com --yes        # control planes' templates first
      kopsy rolling-update cluster demo.example.com --yes
    \b
      kopsy upgrade cluster demo.example.com --yes --roll --max-surge 25%   # all of it
    """
    settings = RollFlags(**flags)
    given = [f"--{k.replace('_', '-')}" for k in flags
             if ctx.get_parameter_source(k) == click.core.ParameterSource.COMMANDLINE]  # not KOPSY_SSH_CONFIG
    if given and not roll:
        raise UsageError(f"{', '.join(given)} only apply with --roll")
    settings.check()

    opts = options()
    store = open_cluster_store(opts)
    name = resolve_cluster_name(store, strip_cluster_word(args), opts)
    if not roll:
        target, moves = upgrade_spec(store, name, kubernetes_version, yes=yes)
        if moves:
            _done_message(name, yes)
        return
    upgrade_and_roll(store, name, kubernetes_version, settings, yes=yes)


def upgrade_spec(store: Any, name: str, kubernetes_version: str | None, *, yes: bool, unfinished: str = "",
                 force_unlock: bool = False) -> tuple[str | None, bool]:
    """Show (and with ``yes`` write) the spec's new version. Returns the version the cluster is
    to run (None when there is nothing to upgrade to) and whether the spec moves to it. ``unfinished``: the spec's version
    while instances still run an older one; the default target is then that version (finish
    it), and a further minor is refused."""
    from kopsy.spec.model import replace
    from kopsy.spec.versions import next_version, upgrade_problem

    cluster, etag = store.get_cluster(name)
    current = cluster.kubernetes_version
    if unfinished and (kubernetes_version is None or kubernetes_version.strip().lstrip("v") == current.lstrip("v")):
        click.echo(f"Cluster {name}'s spec is at {current}, which some instances do not run yet: finishing that upgrade.")
        return current, False
    target = kubernetes_version.strip() if kubernetes_version else next_version(current, _newest_patch)
    if target is None:
        click.echo(f"Cluster {name} is on {current}, the newest version kopsy supports: no upgrade available.")
        return None, False
    if target.lstrip("v") == current.lstrip("v"):
        click.echo(f"Cluster {name} already runs {current}: no upgrade required.")
        return current, False
    problem = upgrade_problem(current, target)
    if problem:
        raise UsageError(f"cannot upgrade cluster {name}: {problem}")
    if unfinished:
        raise UsageError(f"cannot upgrade cluster {name} to {target.lstrip('v')}: the upgrade to {current} is not "
                         f"finished (some instances run {unfinished}); run 'kopsy upgrade cluster {name} --yes --roll' first")
    click.echo(table(["ITEM", "PROPERTY", "OLD", "NEW"], [["Cluster", "KubernetesVersion", current, target.lstrip("v")]]))
    if not yes:
        return target.lstrip("v"), True
    with store.lock(name, "upgrade cluster", force_unlock=force_unlock):
        fresh, etag = store.get_cluster(name)
        if fresh.kubernetes_version != current:
            raise KopsyError(f"cluster {name} changed to {fresh.kubernetes_version} meanwhile; re-run the upgrade")
        store.replace_cluster(replace(fresh, kubernetes_version=target.lstrip("v")), etag)
    click.echo(f"\nUpgrade of cluster {name} to {target.lstrip('v')} written to the spec.")
    return target.lstrip("v"), True


def _newest_patch(minor: str) -> str:
    """A minor's newest published patch, or a one-line error naming the index and the way out."""
    from kopsy.spec.patches import PatchLookupFailed, newest_patch

    try:
        return newest_patch(minor)
    except PatchLookupFailed as exc:
        raise KopsyError(f"cannot find the newest {minor} patch: {exc.message}; pass --kubernetes-version "
                         f"{minor}.N to choose one (or set KOPSY_K8S_PACKAGES to a mirror)") from None


def _done_message(name: str, yes: bool) -> None:
    if not yes:
        click.echo("\nMust specify --yes to perform upgrade")
        return
    click.echo("Next:")
    click.echo(f"  kopsy update cluster {name} --yes            # control-plane templates move now; nodes wait")
    click.echo(f"  kopsy rolling-update cluster {name} --yes    # control planes first, then update --yes and roll the nodes")
    click.echo(f"  (or: kopsy upgrade cluster {name} --yes --roll, which runs all of it)")


def steps(name: str, flags: RollFlags) -> list[str]:
    """The commands ``--roll`` runs after the spec is written, as a user would type them."""
    roll = _flag_text(flags)
    return [
        f"kopsy update cluster {name} --yes",
        f"kopsy rolling-update cluster {name} --yes --instance-group-roles ControlPlane{roll}",
        f"kopsy update cluster {name} --yes",
        f"kopsy rolling-update cluster {name} --yes --instance-group-roles Node,Bastion{roll}",
        f"kopsy validate cluster {name} --wait {int(flags.validation_timeout)}s --count {flags.validate_count}",
    ]


def _flag_text(flags: RollFlags) -> str:
    defaults = RollFlags()
    out = []
    for key, value in vars(flags).items():
        if value != getattr(defaults, key) and value is not None and not key.startswith("ssh_") and key != "bastion":
            flag = f"--{key.replace('_', '-')}"
            text = str(value).lower() if isinstance(value, bool) else f"{value:g}s" if isinstance(value, float) else str(value)
            out.append(flag if value is True else f"{flag}={text}")
    return "".join(f" {f}" for f in out)


def upgrade_and_roll(store: Any, name: str, kubernetes_version: str | None, flags: RollFlags, *, yes: bool) -> None:
    """``upgrade --roll``: the spec, then update, the control planes, update (the skew hold lets
    the node and bastion templates move), the other groups, validate. Progress on stderr.

    With ``yes`` the cluster lock is held for the whole sequence, not taken again per step, so
    nobody else's update or roll can slip in between two steps (the steps' own ``store.lock``
    calls share the one lease: it is re-entrant within a store)."""
    if not yes:
        _upgrade_and_roll(store, name, kubernetes_version, flags, yes=False)
        return
    with store.lock(name, "upgrade cluster --roll", force_unlock=flags.force_unlock) as lease:
        _upgrade_and_roll(store, name, kubernetes_version, flags, yes=True, between=lease.check)


def _upgrade_and_roll(store: Any, name: str, kubernetes_version: str | None, flags: RollFlags, *, yes: bool,
                      between: Callable[[], None] = lambda: None) -> None:
    from kopsy.cli.context import aws_clients
    from kopsy.cli.rolling import rolling_update
    from kopsy.cli.update import update_cluster
    from kopsy.cli.validate import validate
    from kopsy.reconcile.builders.skew import running_versions
    from kopsy.spec.versions import parse_version

    _, (cluster, _), groups = store.read_spec(name)
    igs = [ig for ig, _ in groups]
    spec_version = cluster.kubernetes_version.lstrip("v")
    older = sorted((v for v in running_versions(aws_clients(cluster.region or None), name, igs)
                    if (parse_version(v) or (0, 0, 0)) < (parse_version(spec_version) or (0, 0, 0))),
                   key=lambda v: parse_version(v) or (0, 0, 0))
    target, _ = upgrade_spec(store, name, kubernetes_version, yes=yes, unfinished=older[0] if older else "",
                          force_unlock=flags.force_unlock)
    if target is None:
        return
    plan = steps(name, flags)
    if not yes:
        click.echo("\nWith --yes --roll, after writing the spec, these would run (each a no-op once done):")
        for n, step in enumerate(plan, 2):
            click.echo(f"  {n}. {step}")
        click.echo("\nMust specify --yes to perform upgrade")
        return

    total = len(plan) + 1

    def say(n: int, what: str) -> None:
        between()  # stop rather than go on if the lock was taken from us
        click.echo(f"==> upgrade {name} to {target} [{n}/{total}]: {what}", err=True)

    say(1, f"spec at {target}")
    say(2, plan[0])
    update_cluster(store, name, yes=True, force_unlock=flags.force_unlock, next_steps=False)
    say(3, plan[1])
    rolling_update(store, name, flags, yes=True, roles=["ControlPlane"], coredns=True)
    say(4, plan[2])
    update_cluster(store, name, yes=True, force_unlock=flags.force_unlock, next_steps=False)
    say(5, plan[3])
    rolling_update(store, name, flags, yes=True, roles=["Node", "Bastion"])
    say(6, plan[4])
    validate(store, name, wait=flags.validation_timeout, interval=flags.interval, count=flags.validate_count,
             ssh_user=flags.ssh_user, ssh_key=flags.ssh_key, ssh_config=flags.ssh_config, bastion=flags.bastion)
    click.echo(f"\nUpgrade of cluster {name} to {target} done: every instance runs it and the cluster validates.")

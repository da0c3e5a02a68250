"""``kopsy update cluster [NAME] [--yes]``: plan the cluster's AWS resources, and apply with --yes.

Without --yes this is a dry run (exit 0; with --detailed-exitcode, exit 2 when changes are
pending so CI can gate on drift). With --yes it holds the cluster's state-store lock, applies
the plan in dependency order, and tells the user the next step.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from kopsy.cli.context import aws_clients, open_cluster_store, options, resolve_cluster_name, strip_cluster_word, warm_clients
from kopsy.cli.output import dump_json
from kopsy.errors import CloudError, ExitCode, KopsyError, StateStoreError, UsageError
from kopsy.parallel import MAX_IN_FLIGHT


def _check_store_reachable(url: str) -> None:
    """Instances fetch their PKI from the store with their instance role, so it must be S3;
    refusing a file:// store here fails before anything is created, not halfway through."""
    if url.startswith("file://"):
        raise UsageError(
            "the state store is a local file:// store, which instances cannot read; "
            "use an S3 state store (--state s3://BUCKET) to create a cluster's cloud resources"
        )


PREWARM = ("ec2", "iam", "elbv2", "autoscaling", "ssm")


def _import_engine() -> None:
    """What runs once the lock is held: the planner and every kind's module (~20 ms)."""
    import kopsy.cloud.aws.zones  # noqa: F401
    import kopsy.reconcile.render  # noqa: F401
    import kopsy.reconcile.update  # noqa: F401


def _import_renderer() -> None:
    """The user-data renderer, without jinja2: a run whose renders all come from
    ``kopsy.bootstrap.rendercache`` (a no-op) never imports it; ``_import_templates`` does."""
    import kopsy.bootstrap.render  # noqa: F401


def _import_templates() -> None:
    import kopsy.bootstrap.templates  # noqa: F401  (jinja2: ~25 ms)


def _progress(state: str, change: Any, error: BaseException | None) -> None:
    verb = {"create": "created", "modify": "modified", "delete": "deleted"}[change.action]
    if state == "done":
        click.echo(f"  {verb} {change.kind}/{change.name}", err=True)
    elif state == "failed":
        click.echo(f"  FAILED {change.action} {change.kind}/{change.name}: {error}", err=True)


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, metavar="[cluster] [NAME]")
@click.option("--yes", "-y", is_flag=True, help="Apply the changes (without it, only show them).")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Dry run: exit 2 when changes are pending, 0 when none.")
@click.option("--force-unlock", is_flag=True, help="Take the cluster lock even if another (dead) run holds it.")
@click.option("--parallelism", type=click.IntRange(1, 64), default=MAX_IN_FLIGHT, show_default=True, help="Changes applied at once.")
@click.option("--ignore-kubelet-version-skew", is_flag=True,
              help="Move node templates to the spec's version even while control planes run an older one.")
def command(args: tuple[str, ...], yes: bool, output: str, detailed_exitcode: bool, force_unlock: bool, parallelism: int,
            ignore_kubelet_version_skew: bool) -> None:
    """Plan (and with --yes apply) the cloud resources of a cluster."""
    from kopsy import templatecache
    from kopsy.cli.context import cache_dir

    templatecache.use(cache_dir())  # compiled templates and rendered outputs kept between runs
    opts = options()
    store = open_cluster_store(opts)
    # The cloud clients and the user-data renderer get ready while the spec is being read (a
    # file:// store is refused once the spec is read).
    warm_clients(store, _import_engine, *PREWARM, _import_renderer)  # in the order they are needed
    name = resolve_cluster_name(store, strip_cluster_word(args), opts)
    sys.exit(int(update_cluster(store, name, yes=yes, output=output, detailed_exitcode=detailed_exitcode,
                                force_unlock=force_unlock, parallelism=parallelism,
                                ignore_skew=ignore_kubelet_version_skew)))


def update_cluster(store: Any, name: str, *, yes: bool, output: str = "text", detailed_exitcode: bool = False,
                   force_unlock: bool = False, parallelism: int = MAX_IN_FLIGHT, ignore_skew: bool = False,
                   next_steps: bool = True) -> int:
    """The command's work, for it and for ``upgrade --roll``: plan, and with ``yes`` apply under
    the cluster lock. Returns the exit code (``CHANGES_PENDING`` only with ``detailed_exitcode``)."""
    if yes:
        with store.lock(name, "update cluster", force_unlock=force_unlock):
            return _update(store, name, yes=yes, output=output, detailed_exitcode=detailed_exitcode,
                           parallelism=parallelism, ignore_skew=ignore_skew, next_steps=next_steps)
    return _update(store, name, yes=yes, output=output, detailed_exitcode=detailed_exitcode,
                   parallelism=parallelism, ignore_skew=ignore_skew, next_steps=next_steps)


def _update(store: Any, name: str, *, yes: bool, output: str, detailed_exitcode: bool, parallelism: int,
            ignore_skew: bool, next_steps: bool) -> int:
    from kopsy.cloud.aws.zones import check_security_groups, check_zones
    from kopsy.parallel import parallel
    from kopsy.reconcile.render import plan_text, summary
    from kopsy.reconcile.update import apply_update, plan_update, read_inputs, read_removed

    # Independent reads overlap (docs/performance.md): the spec's parts in one or two round trips
    # (read_inputs; the removal records come from its listing), and the zone and
    # security-group checks with the plan's own facts (all read-only). The
    # first error in this order is the one reported, so a bad zone is named before anything else.
    inputs = read_inputs(store, name, record_verified=yes)
    removed = read_removed(store, name, inputs.listing)
    _check_store_reachable(inputs.state_store_url)
    clients = aws_clients(inputs.cluster.region)
    from kopsy.bootstrap.addons import stale_addons

    _, _, planned, stale = parallel(lambda f: f(), [
        lambda: check_zones(clients, inputs.cluster.region, [s.zone for s in inputs.cluster.subnets]),
        lambda: check_security_groups(clients, {ig.name: ig.additional_security_groups for ig in inputs.instance_groups}),
        lambda: plan_update(clients, inputs, removed=removed, ignore_skew=ignore_skew),
        lambda: stale_addons(store, inputs.cluster, inputs.listing) if yes else [],
    ])
    plan = planned.plan
    if planned.held_version:
        click.echo(f"Note: node and bastion templates stay on Kubernetes {planned.held_version} until every control "
                   f"plane runs {inputs.cluster.kubernetes_version} (roll the control planes, then update again; "
                   f"--ignore-kubelet-version-skew overrides)", err=True)
    if output == "json" and not yes:
        click.echo(dump_json({"plan": _plan_dict(plan), "pending": not plan.empty}))
    elif output == "text":
        text = plan_text(plan)
        if text:
            click.echo(text)
    if plan.empty:
        if yes:
            _publish(store, name, stale, inputs.listing, output)
        if yes and removed:
            store.forget_removed(name, sorted(removed))
        if output == "text":
            click.echo("No changes need to be applied")
        elif yes:
            click.echo(dump_json({"plan": _plan_dict(plan), "applied": []}))
        return ExitCode.OK
    if not yes:
        if output == "text":
            click.echo(f"Plan: {summary(plan)}.")
            click.echo("Must specify --yes to apply changes")
        return ExitCode.CHANGES_PENDING if detailed_exitcode else ExitCode.OK
    if any(c.kind == "LaunchTemplate" and c.action == "create" for c in plan.changes):
        # A new template's user-data is rendered in the apply, once the load balancers it names
        # exist, and likely for the first time: jinja2 loads while the first creates run.
        threading.Thread(target=_import_templates, name="templates", daemon=True).start()
    result = apply_update(clients, planned, workers=parallelism, on_event=_progress if output == "text" else None,
                          publish=lambda: _publish(store, name, stale, inputs.listing, output))
    if output == "json":
        click.echo(dump_json({
            "plan": _plan_dict(plan),
            "applied": [f"{c.kind}/{c.name}" for c in result.done],
            "failed": [{"resource": f"{c.kind}/{c.name}", "error": str(e)} for c, e in result.failed],
            "skipped": [f"{c.kind}/{c.name}" for c in result.skipped],
        }))
    if result.publish_error is not None:
        if not isinstance(result.publish_error, KopsyError):
            raise result.publish_error
        raise StateStoreError(
            f"{result.publish_error}; the launch templates were left as they were ({len(result.done)} other change(s) "
            f"applied); fix the cause and re-run 'kopsy update cluster {name} --yes' (it resumes where it stopped)"
        ) from result.publish_error
    if not result.ok:
        first = "; ".join(f"{c.kind}/{c.name}: {e}" for c, e in result.failed[:3])
        raise CloudError(
            f"{len(result.failed)} change(s) failed and {len(result.skipped)} were skipped ({first}); "
            f"fix the cause and re-run 'kopsy update cluster {name} --yes' (it resumes where it stopped)"
        )
    if removed:  # their resources are gone now: the removal records have done their job
        store.forget_removed(name, sorted(removed))
    if output == "text":
        click.echo(f"Changes applied to cluster {name}: {summary(plan)}.")
    if output == "text" and next_steps:
        click.echo("")
        click.echo("Instances are booting; the cluster needs a few minutes to come up. Next:")
        click.echo(f"  kopsy validate cluster {name} --wait 10m")
        click.echo(f"  kopsy export kubecfg {name} --admin")
    return ExitCode.OK


def _publish(store: Any, name: str, stale: list[tuple[str, bytes, str | None]], listing: Any, output: str) -> None:
    """Write the addons and the etcd module that control-plane user-data pins, where missing or
    stale (``stale``: what ``stale_addons`` found). ``update --yes`` runs it beside the first
    changes and before any launch template (``apply_plan(publish=...)``); a re-run after a kill
    writes only what is still missing (docs/addons.md)."""
    from kopsy.bootstrap.addons import write_addons
    from kopsy.etcd.publish import publish_etcd_module  # imports the renderer: prewarmed by the command
    from kopsy.parallel import parallel

    written, _ = parallel(lambda f: f(), [lambda: write_addons(store, name, stale),
                                          lambda: publish_etcd_module(store, name, listing)])
    if output == "text":
        for key in written:
            click.echo(f"  wrote {store.url_for(name, key)}", err=True)


def _plan_dict(plan: Any) -> dict[str, Any]:
    from kopsy.reconcile.changes import plan_to_dict

    return plan_to_dict(plan)

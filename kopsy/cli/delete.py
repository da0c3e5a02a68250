"""``kopsy delete cluster [NAME] [--yes]``: delete the cluster's AWS resources, then its state.

``kopsy delete instancegroup NAME`` is handled in ``delete_ig.py``.

Without --yes, list what would be deleted (TYPE NAME ID). Resources are found by the cluster's
ownership tag alone, so this works when the state store is gone (name the region with
--region). The state objects (and the kubeconfig context) are removed only when nothing
tagged for the cluster remains, unless --force.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import click

from kopsy.cli.context import DURATION, aws_clients, options, strip_cluster_word
from kopsy.cli.output import dump_json, table
from kopsy.errors import ClusterNotFound, DeleteIncomplete, ExitCode, KopsyError, StateStoreError, UsageError


def _progress() -> Callable[[str, Any, BaseException | None], None]:
    """An event printer: one aligned line per resource as it goes, like kops
    (``Deleted VPC  NAME  ID``). A batch names its count, not 300 ids; the id is left out where
    it is the name. A delete AWS refuses for now is announced once, not at every backoff."""
    from kopsy.cloud.aws.registry import KINDS

    width = max(len(k) for k in KINDS)
    waiting: set[Any] = set()

    def show(state: str, change: Any, error: BaseException | None) -> None:
        ident = "" if change.batch or change.id == change.name else f"  {change.id}"
        if state == "done":
            click.echo(f"Deleted {change.kind:<{width}}  {change.name}{ident}", err=True)
        elif state == "failed":
            click.echo(f"Failed  {change.kind:<{width}}  {change.name}{ident}: {error}", err=True)
        elif state == "retry" and change.key not in waiting:
            waiting.add(change.key)
            click.echo(f"Waiting {change.kind:<{width}}  {change.name}{ident}: {error} (retrying within --wait)", err=True)

    return show


def _rows(resources: list[Any]) -> list[list[str]]:
    return [[a.kind, a.name, a.id] for a in resources]


def _remove_kubeconfig_context(name: str) -> str | None:
    """Drop the cluster's cluster/user/context entries (named after the cluster by ``export
    kubecfg``) from the kubeconfig kubectl would use; returns a warning instead of failing."""
    try:
        from pathlib import Path

        from kopsy import kubeconfig as kc
    except ImportError:
        return None
    try:
        path = kc.choose_path(None, os.environ.get("KUBECONFIG"), Path.home())
        remove = getattr(kc, "remove_context", None)
        if remove is not None:
            remove(path, name)
            return None
        doc = kc.load(path)
        changed = dict(doc)
        for section in ("clusters", "users", "contexts"):
            entries = list(doc.get(section) or [])
            changed[section] = [e for e in entries if not (isinstance(e, dict) and e.get("name") == name)]
        if doc.get("current-context") == name:
            changed["current-context"] = ""
        if changed != doc and doc:
            kc.write_atomic(path, changed)
    except Exception as exc:  # a kubeconfig problem must not undo a finished delete
        return f"could not remove the kubeconfig context of {name}: {exc}"
    return None


@click.command()
@click.argument("args", nargs=-1, metavar="[cluster] [NAME]")
@click.option("--yes", "-y", is_flag=True, help="Really delete (without it, only list what would be deleted).")
@click.option("--region", metavar="REGION", help="Region of the cluster, needed when the state store is gone.")
@click.option("--wait", "wait", type=DURATION, default="10m", show_default=True,
              help="How long to keep retrying resources AWS still holds (e.g. 10m, 30s).")
@click.option("--unregister", is_flag=True, help="Remove only the state-store objects; leave cloud resources alone.")
@click.option("--force", is_flag=True, help="Remove the state even if cloud resources remain.")
@click.option("--force-unlock", is_flag=True, help="Take the cluster lock even if another (dead) run holds it.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(args: tuple[str, ...], yes: bool, region: str | None, wait: float, unregister: bool, force: bool,
            force_unlock: bool, output: str) -> None:
    """Delete a cluster: its cloud resources and its state (or: delete instancegroup NAME)."""
    from kopsy.cli.delete_ig import NOUNS, delete_instance_group

    if args and args[0] in NOUNS:
        if region or unregister or force:
            raise UsageError("--region, --unregister and --force apply to delete cluster, not to delete instancegroup")
        delete_instance_group(list(args[1:]), yes)
        return
    with ExitStack() as held:  # the cluster lock, where it is taken beside the spec read
        _delete_cluster(strip_cluster_word(args), held, yes=yes, region=region, wait=wait, unregister=unregister,
                        force=force, force_unlock=force_unlock, output=output)


# The services a delete's inventory searches (kopsy/cloud/aws/registry.py's kinds).
DELETE_SERVICES = ("ec2", "iam", "elbv2", "elb", "autoscaling")


def _import_engine() -> None:
    import kopsy.reconcile.delete  # noqa: F401  (every kind's module: ~20 ms)


def _read_cluster(store: Any, name: str, held: ExitStack, *, lock: bool, force_unlock: bool) -> Any:
    """The cluster's spec; with ``lock``, the cluster lock (the delete takes it anyway) in the
    same round trip, held in ``held``. The spec's error comes first when both fail."""
    if not lock:
        return store.get_cluster(name)[0]
    from kopsy.parallel import parallel

    cluster, _ = parallel(lambda f: f(), [
        lambda: store.get_cluster(name)[0],
        lambda: held.enter_context(store.lock(name, "delete cluster", force_unlock=force_unlock)),
    ])
    return cluster


def _state_keys(store: Any, name: str) -> list[str] | None:
    """The cluster's state keys, listed beside delete's final search. A store that fails here
    must not hide what the search found: ``None`` leaves the listing, and its error, to
    ``delete_cluster_state``, after the leak report, where they were before."""
    try:
        return store.cluster_keys(name)
    except KopsyError:
        return None


def _let_go(held: ExitStack) -> None:
    """Release a lock taken beside a spec read that found nothing to delete through the store
    (the delete goes on by tags alone). A store that cannot even do that is left as it is."""
    try:
        held.close()
    except KopsyError:
        pass


def _delete_cluster(name: str | None, held: ExitStack, *, yes: bool, region: str | None, wait: float, unregister: bool,
                    force: bool, force_unlock: bool, output: str) -> None:
    opts = options()
    name = name or opts.cluster_name
    store = None
    cluster = None
    if opts.state:
        from kopsy.cli.context import open_cluster_store, resolve_cluster_name, warm_clients

        store = open_cluster_store(opts)
        name = resolve_cluster_name(store, name, opts)
        if not unregister:  # --unregister makes no cloud call: nothing to get ready
            warm_clients(store, _import_engine, *DELETE_SERVICES, region=region)  # while the spec and the lock are read
        try:
            cluster = _read_cluster(store, name, held, lock=yes and not unregister, force_unlock=force_unlock)
        except ClusterNotFound as exc:
            if unregister:
                raise
            if not region:
                raise KopsyError(
                    f"{exc.message}; to delete its cloud resources by their tags anyway, pass --region REGION"
                ) from exc
            _let_go(held)
            store = None  # state already gone: delete from the cloud by tags alone
        except StateStoreError as exc:
            # The store itself is gone or unreadable (bucket deleted, damaged config): with
            # --region the user asked for a delete by tags, which needs no state; the state
            # (if any) is left alone.
            if unregister or not region:
                raise KopsyError(
                    f"{exc.message}; to delete the cluster's cloud resources by their tags anyway, pass --region REGION"
                ) from exc
            _let_go(held)
            click.echo(f"Warning: {exc.message}; deleting by tags in {region} and leaving the state store alone", err=True)
            store = None
    if not name:
        raise UsageError("which cluster? pass NAME (and --region when there is no state store)")
    if unregister:
        if store is None:
            raise UsageError("--unregister needs the state store (--state or KOPSY_STATE_STORE)")
        if not yes:
            click.echo(f"Would remove the state of cluster {name} from {store.store.url} (cloud resources are left alone)")
            click.echo("Must specify --yes to delete cluster")
            return
        with store.lock(name, "delete cluster --unregister", force_unlock=force_unlock):
            store.delete_cluster_state(name)
        click.echo(f"Removed cluster {name} from the state store; its cloud resources were left in place")
        return
    if store is None and not region:
        raise UsageError(f'no state for cluster "{name}": pass --region to delete its resources by tag')
    clients = aws_clients(region or (cluster.region if cluster else None))

    from kopsy.reconcile.delete import delete_resources, inventory

    if not yes:
        found = inventory(clients, name)
        if output == "json":
            click.echo(dump_json({"cluster": name, "resources": [{"type": a.kind, "name": a.name, "id": a.id} for a in found]}))
        elif found:
            click.echo(table(["TYPE", "NAME", "ID"], _rows(found)))
        else:
            click.echo(f"No cloud resources of cluster {name} found in {clients.region}")
        if output == "text":
            click.echo("")
            click.echo("Must specify --yes to delete cluster")
        return

    def run() -> None:
        click.echo(f"Deleting cluster {name} in {clients.region}...", err=True)
        # The state objects are listed beside the final search of the cloud, not after it: a round
        # trip less. The listing is used only when that search found nothing, so no instance that
        # could still write (an etcd backup) was running when it was made.
        result = delete_resources(clients, name, timeout=wait, on_event=_progress() if output == "text" else None,
                                  beside_search=(lambda: _state_keys(store, name)) if store is not None else None)

        def why(a: Any) -> str:
            return result.errors.get((a.kind, a.id)) or "still there when the cloud was searched again"

        if output == "json":
            click.echo(dump_json({
                "cluster": name,
                "deleted": [{"type": c.kind, "name": c.name, "id": c.id} for c in result.deleted],
                "remaining": [{"type": a.kind, "name": a.name, "id": a.id, "error": why(a)} for a in result.remaining],
            }))
        if result.remaining and output == "text":
            click.echo("Resources still carrying the cluster's tag (not deleted):")
            click.echo(table(["TYPE", "NAME", "ID", "WHY"], [[a.kind, a.name, a.id, why(a)[:160]] for a in result.remaining]))
        if result.remaining and not force:
            raise DeleteIncomplete(
                f"{len(result.remaining)} resource(s) of cluster {name} remain; the state was kept. "
                f"Re-run 'kopsy delete cluster {name} --yes' (perhaps with a longer --wait), or remove them by hand",
                result.remaining,
            )
        if store is not None:
            store.delete_cluster_state(name, keys=result.beside if result.ok else None)
        warning = _remove_kubeconfig_context(name)
        if warning:
            click.echo(f"Warning: {warning}", err=True)
        if result.remaining:  # --force: the state is gone, but a leak is still not a success
            raise DeleteIncomplete(
                f"{len(result.remaining)} resource(s) of cluster {name} remain; the state was removed anyway (--force). "
                f"Remove them by hand, or with 'kopsy delete cluster {name} --region {clients.region} --yes'",
                result.remaining,
            )
        if output == "text":
            click.echo(f"Deleted {len(result.deleted)} resource(s).")
            click.echo(f"Deleted cluster: {name}")

    if store is not None:
        with store.lock(name, "delete cluster", force_unlock=force_unlock):
            run()
    else:
        run()
    sys.exit(int(ExitCode.OK))

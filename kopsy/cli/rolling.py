"""``kopsy rolling-update cluster [NAME]``: replace instances whose launch template changed.

kops' flags and defaults. Without --yes it prints kops' table (``-o json``: the same as
``{"groups": [...]}``) and exits 0. With --yes it holds the cluster lock and runs
``kopsy.rolling.engine``; each step goes to stderr with the instance, its node and the batch,
and an estimate of the time left. docs/rolling-update.md tells the whole story.
"""

from __future__ import annotations

import time
from typing import Any

import click

from kopsy.cli.context import DURATION, aws_clients, open_cluster_store, options, resolve_cluster_name, strip_cluster_word
from kopsy.cli.output import dump_json, table
from kopsy.errors import ExitCode, UsageError


@click.command("rolling-update", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("args", nargs=-1, metavar="[cluster] [NAME]")
@click.option("--yes", "-y", is_flag=True, help="Replace the instances (without it, only show what would be).")
@click.option("--instance-group", "instance_groups", multiple=True, metavar="NAME", help="Only this group (repeatable).")
@click.option("--instance-group-roles", default="", metavar="ROLES", help="Only groups of these roles: ControlPlane,Node,Bastion.")
@click.option("--max-surge", metavar="N|P%", help="Instances launched ahead of draining (default: the spec's rollingUpdate, else 1).")
@click.option("--max-unavailable", metavar="N|P%", help="Instances out of service at once (default: the spec's, else 0).")
@click.option("--cloudonly", is_flag=True, help="No drain and no validation: for a cluster that is already broken.")
@click.option("--force", is_flag=True, help="Replace every instance, up to date or not.")
@click.option("--drain-timeout", type=DURATION, default="15m", show_default=True, metavar="DURATION")
@click.option("--validation-timeout", type=DURATION, default="15m", show_default=True, metavar="DURATION")
@click.option("--validate-count", type=click.IntRange(min=1), default=2, show_default=True,
              help="Consecutive passing validations after each batch.")
@click.option("--interval", type=DURATION, default="15s", show_default=True, metavar="DURATION",
              help="Time between validations.")
@click.option("--fail-on-drain-error", type=click.BOOL, default=True, is_flag=False, flag_value=True, show_default=True,
              metavar="[true|false]", help="Stop when a drain fails (false: go on and say so).")
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--force-unlock", is_flag=True, help="Take the cluster lock even if another (dead) run holds it.")
@click.option("--ssh-user", metavar="USER", help="Login user (beats the ssh config's User; default ubuntu).")
@click.option("--ssh-key", type=click.Path(dir_okay=False, exists=True), metavar="PATH", help="Private key.")
@click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True), envvar="KOPSY_SSH_CONFIG", show_envvar=True,
              metavar="PATH", help="OpenSSH config to resolve hosts with (default ~/.ssh/config).")
@click.option("--bastion", metavar="[USER@]HOST[:PORT]", help="Reach instances through this jump host.")
def command(args: tuple[str, ...], yes: bool, instance_groups: tuple[str, ...], instance_group_roles: str,
            max_surge: str | None, max_unavailable: str | None, cloudonly: bool, force: bool, drain_timeout: float,
            validation_timeout: float, validate_count: int, interval: float, fail_on_drain_error: bool, output: str,
            force_unlock: bool, ssh_user: str | None, ssh_key: str | None, ssh_config: str | None,
            bastion: str | None) -> None:
    """Replace the instances of a cluster that run an old launch-template version.

    \b
    Order: bastions, control planes (one at a time), node groups. Per instance: cordon,
    drain, terminate (the group launches a replacement), validate. With a surge, the
    replacements boot before anything is drained.

    \b
      kopsy rolling-update cluster demo.example.com          # what would be replaced
      kopsy rolling-update cluster --yes --max-surge 25%
      kopsy rolling-update cluster --instance-group nodes --force --cloudonly --yes
    """
    from kopsy.rolling import surge
    from kopsy.rolling.engine import Roller, RollOptions
    from kopsy.rolling.selection import TABLE_HEADER, filter_groups, table_rows

    if max_surge is not None:
        surge.check(max_surge, "--max-surge")
    if max_unavailable is not None:
        surge.check(max_unavailable, "--max-unavailable")
    for flag, value in (("--interval", interval), ("--drain-timeout", drain_timeout), ("--validation-timeout", validation_timeout)):
        if value <= 0:
            raise UsageError(f"{flag} must be more than 0s")
    roles = [r.strip() for r in instance_group_roles.split(",") if r.strip()]
    known_roles = {"controlplane": "ControlPlane", "master": "ControlPlane", "node": "Node", "bastion": "Bastion"}
    bad = [r for r in roles if r.lower() not in known_roles]
    if bad:
        raise UsageError(f"--instance-group-roles: {', '.join(bad)} is not a role; use ControlPlane, Node or Bastion")
    roles = [known_roles[r.lower()] for r in roles]

    opts = options()
    store = open_cluster_store(opts)
    name = resolve_cluster_name(store, strip_cluster_word(args), opts)
    cluster, _ = store.get_cluster(name)
    igs = [ig for ig, _ in store.list_instance_groups(name)]
    missing = sorted(set(instance_groups) - {ig.name for ig in igs})
    if missing:
        raise UsageError(f"instance group(s) {', '.join(missing)} not found in cluster {name}; it has: "
                         f"{', '.join(ig.name for ig in igs)}")
    clients = aws_clients(cluster.region or None)
    run_opts = RollOptions(force=force, cloudonly=cloudonly, max_surge=max_surge, max_unavailable=max_unavailable,
                           drain_timeout=drain_timeout, validation_timeout=validation_timeout,
                           validate_count=validate_count, interval=interval, fail_on_drain_error=fail_on_drain_error)
    roller = Roller(name, igs, clients, run_opts, cluster_rolling=dict(cluster.rolling_update),
                    kubernetes_version=cluster.kubernetes_version)

    def selected() -> list[Any]:
        return filter_groups(roller.plans(force=force), instance_groups, roles)

    plans = selected()
    pending = sum(p.pending for p in plans)
    if not yes:
        if output == "json":
            click.echo(dump_json({"groups": [p.as_dict() for p in plans]}))
        else:
            click.echo(table(TABLE_HEADER, table_rows(plans)))
            click.echo("No rolling-update required." if not pending else "Must specify --yes to rolling-update.")
        raise SystemExit(int(ExitCode.OK))

    if not cloudonly:
        _connect_remote(roller, cluster, name, igs, clients, ssh_user=ssh_user, ssh_key=ssh_key,
                        ssh_config=ssh_config, bastion=bastion)
    roller.on_event = _render
    started = time.monotonic()
    with store.lock(name, "rolling-update cluster", force_unlock=force_unlock):
        plans = selected()  # fresh facts under the lock
        if not any(p.pending for p in plans):
            if output == "json":
                click.echo(dump_json({"groups": [p.as_dict() for p in plans], "replaced": []}))
            else:
                click.echo("No rolling-update required.")
            raise SystemExit(int(ExitCode.OK))
        result = roller.run(plans)
    took = time.monotonic() - started
    if output == "json":
        click.echo(dump_json({"replaced": result.replaced, "drained": result.drained, "warnings": result.warnings,
                              "seconds": round(took, 1)}))
    else:
        click.echo(f"Rolling update of cluster {name} done: {len(result.replaced)} instance(s) replaced, "
                   f"{len(result.drained)} drained, in {took:.0f}s.")


def _render(event: Any) -> None:
    from kopsy.rolling.progress import fmt_eta

    where = " ".join(p for p in (
        event.group,
        f"[batch {event.batch}]" if event.batch else "",
        event.instance,
        f"({event.node})" if event.node else "",
    ) if p)
    eta = f" ({fmt_eta(event.eta)})" if event.step in ("detach", "terminate", "wait", "batch-done") else ""
    now = time.time()
    click.echo(f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 10)} {event.step:<10} {where}: {event.message}{eta}", err=True)


def _connect_remote(roller: Any, cluster: Any, name: str, igs: list[Any], clients: Any, *, ssh_user: str | None,
                    ssh_key: str | None, ssh_config: str | None, bastion: str | None) -> None:
    """Give the roller its SSH side: kubectl on a control plane, the etcd guard, validation."""
    from kopsy.cli.validate import ssh_settings
    from kopsy.cloud.aws.groups import read_groups
    from kopsy.errors import SSHError
    from kopsy.remote import SSHConnection, SSHConnector
    from kopsy.rolling.drain import Kube
    from kopsy.spec.model import ROLE_CONTROL_PLANE
    from kopsy.validate import validate_cluster
    from kopsy.validate.engine import ssh_address

    settings = ssh_settings(cluster, ssh_user=ssh_user, ssh_key=ssh_key, ssh_config=ssh_config, bastion=bastion,
                            connect_timeout=10.0, command_timeout=60.0)
    def connect(avoid: str) -> SSHConnection:
        """A control plane other than node ``avoid`` when one answers, else ``avoid`` itself.
        A connector per call: it reads the ssh config when made, and replacements are new hosts."""
        connector = SSHConnector(settings)
        cps = [i for i in read_groups(clients, name).instances.values() if i.role == ROLE_CONTROL_PLANE and i.state == "running"]
        cps.sort(key=lambda i: (i.private_dns == avoid, i.id))
        last: SSHError | None = None
        for inst in cps:
            try:
                return connector.connect(ssh_address(inst, private=bool(bastion)))
            except SSHError as exc:
                click.echo(f"Note: control plane {inst.id} ({inst.private_dns}) cannot be reached over SSH: {exc}", err=True)
                last = exc
        raise last or SSHError(f"no running control plane of {name} to run kubectl on")

    roller.kube = Kube(connect)
    roller.connect_control_plane = connect
    roller.validate = lambda: validate_cluster(name, igs, clients, SSHConnector(settings), diagnose=False)
